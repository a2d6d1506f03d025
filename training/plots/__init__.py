"""Accuracy pictures that `salecast evaluate <model> --plot` writes next to its results.

`curves`: reliability curves (CVR, intent) and Recall@k curves (IMN); `stmp`: STMP's
forecast-against-actual bands and festivals up close. They live with training, which draws
them, so training never imports the benchmarks.
"""
