with source as (
    select * from {{ source('raw', 'ohlcv') }}
)

select
    venue,
    market,
    symbol,
    timeframe,
    ts,
    ts + (case timeframe
        when '1h' then interval 1 hour
        when '1d' then interval 1 day
        when '30m' then interval 30 minute
        when '10m' then interval 10 minute
        when '5m' then interval 5 minute
    end) as close_ts,
    open,
    high,
    low,
    close,
    volume
from source
