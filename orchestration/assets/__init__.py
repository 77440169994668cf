"""Asset modules by domain: ingestion, features, training, evaluation, promotion, serving."""
