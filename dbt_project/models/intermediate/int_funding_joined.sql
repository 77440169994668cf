-- Attach to each bar the funding settled at its close (0 if none), the last settled rate known
-- at its close, and the hours from its close to the next settlement.
with bars as (
    select * from {{ ref('int_bars_aligned') }}
),

funding as (
    select * from {{ ref('stg_market__funding_rates') }}
),

settled_at_close as (
    select
        bars.venue,
        bars.symbol,
        bars.ts,
        funding.funding_rate as settled_rate
    from bars
    inner join funding
        on funding.venue = bars.venue
        and funding.symbol = bars.symbol
        and funding.settled_at > bars.ts
        and funding.settled_at <= bars.close_ts
),

last_known as (
    select
        bars.venue,
        bars.symbol,
        bars.ts,
        funding.funding_rate as last_funding_rate,
        funding.interval_hours
    from bars
    asof left join funding
        on funding.venue = bars.venue
        and funding.symbol = bars.symbol
        and funding.settled_at <= bars.close_ts
)

select
    bars.*,
    coalesce(settled_at_close.settled_rate, 0.0) as funding_rate_settled,
    last_known.last_funding_rate,
    last_known.interval_hours as funding_interval_hours
from bars
left join settled_at_close using (venue, symbol, ts)
left join last_known using (venue, symbol, ts)
