"""Hand-written peers that `bench.http_load` measures salecast against, side by side."""
