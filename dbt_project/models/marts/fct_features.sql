-- Stationary per-bar features; every value at bar t is known at the close of bar t.
with joined as (
    select * from {{ ref('int_funding_joined') }}
),

with_basis as (
    select
        *,
        (close - spot_close) / spot_close as basis,
        ln(close / lag(close) over w) as log_return_1,
        coalesce(funding_interval_hours, 8) as interval_h,
        (epoch(close_ts) / 3600)::bigint as close_hour
    from joined
    window w as (partition by venue, symbol, timeframe order by ts)
)

select
    venue,
    symbol,
    timeframe,
    ts,
    close_ts,
    open,
    high,
    low,
    close,
    volume,
    spot_close,
    mark_close,
    basis,
    basis - avg(basis) over w_z as basis_demeaned,
    (basis - avg(basis) over w_z) / nullif(stddev_samp(basis) over w_z, 0) as basis_zscore,
    log_return_1,
    funding_rate_settled,
    last_funding_rate,
    interval_h - (close_hour % interval_h) as hours_to_funding
from with_basis
window w_z as (
    partition by venue, symbol, timeframe order by ts
    rows between {{ var('basis_zscore_window') - 1 }} preceding and current row
)
