-- Each funding settlement with its 8h-equivalent rate, annualized carry and its z-score against
-- the previous `funding_zscore_window` settlements (NULL until the window is full).
with funding as (
    select * from {{ ref('stg_market__funding_rates') }}
),

stats as (
    select
        *,
        avg(funding_rate) over recent as rolling_mean,
        stddev_samp(funding_rate) over recent as rolling_std,
        count(funding_rate) over recent as rolling_count
    from funding
    window recent as (
        partition by venue, symbol
        order by settled_at
        rows between {{ var('funding_zscore_window') - 1 }} preceding and current row
    )
)

select
    venue,
    symbol,
    settled_at,
    funding_rate,
    interval_hours,
    funding_rate * 8.0 / interval_hours as funding_rate_8h,
    funding_rate * (24.0 * 365.0) / interval_hours as funding_carry_annualized,
    case
        when rolling_count = {{ var('funding_zscore_window') }}
            then {{ zscore('funding_rate', 'rolling_mean', 'rolling_std') }}
    end as funding_zscore
from stats
