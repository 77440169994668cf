{#- Minutes in a bar of each supported timeframe. -#}
{% macro timeframe_minutes_map() -%}
    {{ return({"1m": 1, "5m": 5, "10m": 10, "15m": 15, "30m": 30, "1h": 60, "4h": 240, "8h": 480, "1d": 1440}) }}
{%- endmacro %}

{#- SQL expression: the bar length in minutes of the timeframe column (NULL if unsupported). -#}
{% macro timeframe_minutes(column) -%}
    case {{ column }}
    {%- for name, minutes in timeframe_minutes_map().items() %}
        when '{{ name }}' then {{ minutes }}
    {%- endfor %}
    end
{%- endmacro %}

{#- The longest bar among the configured timeframes, in minutes. -#}
{% macro max_timeframe_minutes() -%}
    {%- set minutes = [] -%}
    {%- for tf in var("timeframes") -%}
        {%- do minutes.append(timeframe_minutes_map()[tf]) -%}
    {%- endfor -%}
    {{ return(minutes | max) }}
{%- endmacro %}

{#- A relation of the `timeframes` var: (timeframe, bar_minutes), one row each. -#}
{% macro configured_timeframes() -%}
    select timeframe, {{ timeframe_minutes('timeframe') }} as bar_minutes
    from (select unnest({{ var('timeframes') }}) as timeframe)
{%- endmacro %}
