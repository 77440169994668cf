-- Known holes in the bar history, as recorded by ingestion.
with source as (
    select * from {{ source('raw', 'data_gaps') }}
)

select
    venue,
    market,
    symbol,
    timeframe,
    gap_start,
    gap_end,
    missing_bars,
    source as reported_by
from source
