{#- A relationships test on distinct keys: every combination of `columns` in the model appears
    in `to`. One join of distinct keys instead of one lookup per row. -#}
{% test keys_exist_in(model, columns, to) %}
with child as (select distinct {{ columns | join(', ') }} from {{ model }}),
parent as (select distinct {{ columns | join(', ') }} from {{ to }})
select child.* from child anti join parent using ({{ columns | join(', ') }})
{% endtest %}
