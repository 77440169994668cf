{#- (value - mean) / std; 0 when the window is constant (std 0 up to float noise), since the
    value then equals the mean. A NULL std (window not yet full) stays NULL. -#}
{% macro zscore(value, mean, std) -%}
    case
        when {{ std }} > 1e-9 * abs({{ mean }}) + 1e-15 then ({{ value }} - {{ mean }}) / {{ std }}
        when {{ std }} is not null then 0.0
    end
{%- endmacro %}

{#- True when a rolling mean covers `bars` rows and none was NULL: the mean must be taken over
    coalesce(value, 'nan'), which is NaN exactly when the window held a NULL. -#}
{% macro full_window(mean, bar_number, bars) -%}
    {{ bar_number }} >= {{ bars }} and not isnan({{ mean }})
{%- endmacro %}
