"""The run, unit by unit: a batch (`batch`: plan, run, send, clean up), one shard of it in a
process pool (`shard`), one instance in a pool process (`instance`: read, pixels, header, write)
and the last check of its bytes (`verify`); where a batch's things are (`placement`) and where
its progress goes (`progress`)."""
