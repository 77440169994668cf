-- One row per (venue, symbol, perp bar): perp OHLCV beside the spot and mark closes of the same bar.
with perp as (
    select * from {{ ref('stg_market__ohlcv') }}
    where market = 'perp' and timeframe = '{{ var("timeframe") }}'
),

spot as (
    select venue, symbol, ts, close as spot_close
    from {{ ref('stg_market__ohlcv') }}
    where market = 'spot' and timeframe = '{{ var("timeframe") }}'
),

mark as (
    select venue, symbol, ts, close as mark_close
    from {{ ref('stg_market__ohlcv') }}
    where market = 'mark' and timeframe = '{{ var("timeframe") }}'
)

select
    perp.venue,
    perp.symbol,
    perp.timeframe,
    perp.ts,
    perp.close_ts,
    perp.open,
    perp.high,
    perp.low,
    perp.close,
    perp.volume,
    spot.spot_close,
    mark.mark_close
from perp
left join spot using (venue, symbol, ts)
left join mark using (venue, symbol, ts)
