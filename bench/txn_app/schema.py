"""Schema of the txn benchmark app: one table, no user indexes."""

from syncline import define_schema, define_table, v

schema = define_schema({"events": define_table({"key": v.string()})})
