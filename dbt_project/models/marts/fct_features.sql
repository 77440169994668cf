{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['venue', 'symbol', 'timeframe', 'ts'],
        on_schema_change='fail',
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

-- Basis of the same bars for the cross-venue dispersion, read from the aligned bars rather than
-- from `bars` (which would otherwise be materialized to serve several consumers).
closes as not materialized (
    select venue, symbol, timeframe, ts, {{ basis('close', 'spot_close') }} as basis
    from {{ ref('int_bars_aligned') }}
    {%- if scan_from %}
    where ts >= {{ scan_from }}
    {%- endif %}
),

funding_placed as (
    select * from {{ ref('int_funding_placed') }}
    {%- if scan_from %}
    where ts >= {{ scan_from }}
    {%- endif %}
),

funding as (
    select * from {{ ref('int_funding_rates_scored') }}
),

watermarks as (
    {{ watermarks() }}
),

per_bar as (
    select
        bars.*,
        {{ basis('bars.close', 'bars.spot_close') }} as basis,
        (bars.mark_close - bars.close) / bars.close as mark_spread,
        -- over exactly one bar length (NULL after a missing bar), so realized volatility needs
        -- no second window pass
        ln(bars.close / bars.prev_close) as log_return_1,
        ln(nullif(bars.volume, 0)) as log_volume,
        funding_placed.funding_rate_settled,
        funding_placed.funding_settlements,
        funding_placed.last_settled_at
    from bars
    left join funding_placed
        on bars.venue = funding_placed.venue
        and bars.symbol = funding_placed.symbol
        and bars.timeframe = funding_placed.timeframe
        and bars.ts = funding_placed.ts
),

-- Symbols quoted on two venues or more: the only ones with a cross-venue dispersion.
multi_venue_symbols as (
    select symbol
    from closes
    group by symbol
    having count(distinct venue) >= 2
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
    from closes
    where symbol in (select symbol from multi_venue_symbols)
    group by symbol, timeframe, ts
    having count(basis) >= 2
),

-- A rolling statistic is kept only over a full window of non-NULL inputs. Instead of a count
-- per window (a third aggregate each), the mean is taken over the input with NULL read as NaN:
-- it is NaN exactly when the window holds a NULL, and `bar_number` tells whether it is full.
rolling as (
    select
        *,
        row_number() over (w) as bar_number,
        {%- for h in var('return_horizons') if h != 1 %}
        ln(close / lag(close, {{ h }}) over (w)) as log_return_{{ h }},
        {%- endfor %}
        {%- for n in var('basis_velocity_lags') %}
        basis - lag(basis, {{ n }}) over (w) as basis_velocity_{{ n }},
        {%- endfor %}
        avg(coalesce(basis, 'nan')) over (w rows between {{ zw - 1 }} preceding and current row)
            as basis_mean,
        stddev_samp(basis) over (w rows between {{ zw - 1 }} preceding and current row)
            as basis_std,
        avg(coalesce(log_volume, 'nan'))
            over (w rows between {{ vw - 1 }} preceding and current row) as log_volume_mean,
        stddev_samp(log_volume) over (w rows between {{ vw - 1 }} preceding and current row)
            as log_volume_std,
        avg(coalesce(log_return_1 * log_return_1, 'nan'))
            over (w rows between {{ rw - 1 }} preceding and current row) as mean_squared_return
    from per_bar
    window w as ({{ by_bar }})
),

features as (
    select
        rolling.venue,
        rolling.symbol,
        rolling.timeframe,
        rolling.ts,
        rolling.close_ts,
        rolling.open,
        rolling.high,
        rolling.low,
        rolling.close,
        rolling.volume,
        rolling.spot_close,
        rolling.mark_close,
        rolling.index_close,
        rolling.basis,
        case
            when {{ full_window('rolling.basis_mean', 'rolling.bar_number', zw) }}
                then rolling.basis - rolling.basis_mean
        end as basis_demeaned,
        case
            when {{ full_window('rolling.basis_mean', 'rolling.bar_number', zw) }}
                then {{ zscore('rolling.basis', 'rolling.basis_mean', 'rolling.basis_std') }}
        end as basis_zscore,
        {%- for n in var('basis_velocity_lags') %}
        rolling.basis_velocity_{{ n }},
        {%- endfor %}
        dispersion.basis_dispersion_std,
        dispersion.basis_dispersion_range,
        coalesce(dispersion.basis_venues, 1) as basis_venues,
        {%- for h in var('return_horizons') %}
        rolling.log_return_{{ h }},
        {%- endfor %}
        case
            when {{ full_window('rolling.mean_squared_return', 'rolling.bar_number', rw) }}
                then sqrt(rolling.mean_squared_return)
        end as realized_vol,
        case
            when {{ full_window('rolling.log_volume_mean', 'rolling.bar_number', vw) }}
                then {{ zscore(
                    'rolling.log_volume', 'rolling.log_volume_mean', 'rolling.log_volume_std'
                ) }}
        end as volume_zscore,
        rolling.mark_spread,
        rolling.funding_rate_settled,
        rolling.funding_settlements,
        last_funding.funding_rate as last_funding_rate,
        last_funding.funding_rate_8h as last_funding_rate_8h,
        last_funding.funding_zscore,
        last_funding.funding_carry_annualized,
        coalesce(last_funding.interval_hours, 8) as funding_interval_hours,
        (
            coalesce(last_funding.interval_hours, 8) * 60
            - (epoch_ms(rolling.close_ts) // 60000)
            % (coalesce(last_funding.interval_hours, 8) * 60)
        ) / 60.0 as hours_to_funding,
        rolling.order_book_imbalance,
        rolling.filled::integer as filled
    from rolling
    left join funding as last_funding
        on rolling.venue = last_funding.venue
        and rolling.symbol = last_funding.symbol
        and rolling.last_settled_at = last_funding.settled_at
    left join dispersion
        on rolling.symbol = dispersion.symbol
        and rolling.timeframe = dispersion.timeframe
        and rolling.ts = dispersion.ts
    left join watermarks
        on rolling.venue = watermarks.venue
        and rolling.symbol = watermarks.symbol
        and rolling.timeframe = watermarks.timeframe
    -- a bar whose spot or mark close is neither present nor carried (a longer gap) is left out
    where {{ bars_to_write('rolling.ts') }}
        and rolling.spot_close is not null
        and rolling.mark_close is not null
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
