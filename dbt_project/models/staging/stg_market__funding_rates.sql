-- Funding settlements; a rate is known at its settlement time, not before.
with source as (
    select * from {{ source('raw', 'funding_rates') }}
)

select
    venue,
    symbol,
    ts as settled_at,
    funding_rate,
    interval_hours,
    -- The interval slot a settlement belongs to (nearest point of the interval grid from 00:00).
    time_bucket(
        to_hours(interval_hours), ts + to_minutes(interval_hours * 30)
    ) as settlement_slot
from source
