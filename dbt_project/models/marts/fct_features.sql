{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['venue', 'symbol', 'timeframe', 'ts'],
    )
}}
-- Stationary, scale-invariant features per (venue, symbol, timeframe, bar). Every value at bar t
-- uses only data known at the close of bar t: windows look back only, funding counts from its
-- settlement, order-book snapshots from their time. Windows are in bars of the row's timeframe.
{%- set zw = var('basis_zscore_window') %}
{%- set vw = var('volume_zscore_window') %}
{%- set rw = var('volatility_window') %}
{%- set lookback = [zw, vw, rw + 1] + var('return_horizons') + var('basis_velocity_lags') %}
{%- set scan_from = scan_start(lookback | max) %}
{%- set by_bar = 'partition by venue, symbol, timeframe order by ts' %}

with bars as (
    select * from {{ ref('int_bars_joined') }}
    {%- if scan_from %}
    where ts >= {{ scan_from }}
    {%- endif %}
),

watermarks as (
    {{ watermarks() }}
),

per_bar as (
    select
        *,
        (close - spot_close) / spot_close as basis,
        (mark_close - close) / close as mark_spread,
        ln(nullif(volume, 0)) as log_volume,
        coalesce(funding_interval_hours, 8) as interval_h
    from bars
),

-- Cross-venue dispersion of basis per (symbol, timeframe, bar); NULL below two venues.
dispersion as (
    select
        symbol,
        timeframe,
        ts,
        count(basis) as basis_venues,
        stddev_samp(basis) as basis_dispersion_std,
        max(basis) - min(basis) as basis_dispersion_range
    from per_bar
    group by symbol, timeframe, ts
    having count(basis) >= 2
),

rolling as (
    select
        *,
        {%- for h in var('return_horizons') %}
        ln(close / lag(close, {{ h }}) over (w)) as log_return_{{ h }},
        {%- endfor %}
        {%- for n in var('basis_velocity_lags') %}
        basis - lag(basis, {{ n }}) over (w) as basis_velocity_{{ n }},
        {%- endfor %}
        avg(basis) over (w rows between {{ zw - 1 }} preceding and current row) as basis_mean,
        stddev_samp(basis) over (w rows between {{ zw - 1 }} preceding and current row)
            as basis_std,
        count(basis) over (w rows between {{ zw - 1 }} preceding and current row) as basis_n,
        avg(log_volume) over (w rows between {{ vw - 1 }} preceding and current row)
            as log_volume_mean,
        stddev_samp(log_volume) over (w rows between {{ vw - 1 }} preceding and current row)
            as log_volume_std,
        count(log_volume) over (w rows between {{ vw - 1 }} preceding and current row)
            as log_volume_n
    from per_bar
    window w as ({{ by_bar }})
),

volatility as (
    select
        *,
        sqrt(avg(log_return_1 * log_return_1) over (w rows between {{ rw - 1 }} preceding and current row))
            as realized_vol_raw,
        count(log_return_1) over (w rows between {{ rw - 1 }} preceding and current row)
            as realized_vol_n
    from rolling
    window w as ({{ by_bar }})
),

features as (
    select
        volatility.venue,
        volatility.symbol,
        volatility.timeframe,
        volatility.ts,
        volatility.close_ts,
        volatility.open,
        volatility.high,
        volatility.low,
        volatility.close,
        volatility.volume,
        volatility.spot_close,
        volatility.mark_close,
        volatility.index_close,
        volatility.basis,
        case
            when volatility.basis_n = {{ zw }} then volatility.basis - volatility.basis_mean
        end as basis_demeaned,
        case
            when volatility.basis_n = {{ zw }}
                then {{ zscore('volatility.basis', 'volatility.basis_mean', 'volatility.basis_std') }}
        end as basis_zscore,
        {%- for n in var('basis_velocity_lags') %}
        volatility.basis_velocity_{{ n }},
        {%- endfor %}
        dispersion.basis_dispersion_std,
        dispersion.basis_dispersion_range,
        coalesce(dispersion.basis_venues, 1) as basis_venues,
        {%- for h in var('return_horizons') %}
        volatility.log_return_{{ h }},
        {%- endfor %}
        case when volatility.realized_vol_n = {{ rw }} then volatility.realized_vol_raw end
            as realized_vol,
        case
            when volatility.log_volume_n = {{ vw }}
                then {{ zscore(
                    'volatility.log_volume', 'volatility.log_volume_mean', 'volatility.log_volume_std'
                ) }}
        end as volume_zscore,
        volatility.mark_spread,
        volatility.funding_rate_settled,
        volatility.funding_settlements,
        volatility.last_funding_rate,
        volatility.last_funding_rate_8h,
        volatility.funding_zscore,
        volatility.funding_carry_annualized,
        volatility.interval_h as funding_interval_hours,
        (
            volatility.interval_h * 60
            - (epoch_ms(volatility.close_ts) // 60000) % (volatility.interval_h * 60)
        ) / 60.0 as hours_to_funding,
        volatility.order_book_imbalance
    from volatility
    left join dispersion
        on volatility.symbol = dispersion.symbol
        and volatility.timeframe = dispersion.timeframe
        and volatility.ts = dispersion.ts
    left join watermarks
        on volatility.venue = watermarks.venue
        and volatility.symbol = watermarks.symbol
        and volatility.timeframe = watermarks.timeframe
    where {{ bars_to_write('volatility.ts') }}
)

select
    *,
    hours_to_funding / funding_interval_hours as funding_interval_remaining,
    case
        when basis > {{ var('regime_basis_threshold') }}
            and last_funding_rate_8h >= {{ var('regime_funding_threshold') }}
            then 'contango_high_funding'
        when basis < -{{ var('regime_basis_threshold') }} and last_funding_rate_8h < 0
            then 'backwardation_negative_funding'
        when basis is not null then 'flat'
    end as regime,
    case
        when basis > {{ var('regime_basis_threshold') }}
            and last_funding_rate_8h >= {{ var('regime_funding_threshold') }}
            then 1
        when basis < -{{ var('regime_basis_threshold') }} and last_funding_rate_8h < 0 then -1
        when basis is not null then 0
    end as regime_code
from features
