"""Benchmarks that print ratios and tables measured side by side in one run (never asserted in tests).

- :mod:`refmann.bench.lsh`: recall and speed of the LSH index against the exact index (``refmann bench lsh``);
- :mod:`refmann.bench.steps`: per-step time of one model against N (``refmann bench steps``);
- :mod:`refmann.bench.scaling`: Figure 1 of Rae et al. 2016, time and memory of NTM, DAM, SAM-linear and
  SAM-LSH against N, each point in a fresh process, with plots and ratios (``refmann bench scaling``),
  and its Figure 7, the DNC against the SDNC with a linear and an LSH index (``--figure 7``);
  its budgets (predicting a point's cost, extrapolating skipped points) are in :mod:`refmann.bench.budget`
  and its files (CSV, JSON, the Markdown table, the two plots) in :mod:`refmann.bench.report`;
- :mod:`refmann.bench.footprint`: SAM trained at very large N, with the bytes each part of its state holds
  (``refmann bench footprint``);
- :mod:`refmann.bench.pkm`: one product-key memory training step against N = 2^14 … 2^20, in parts, beside
  the bare-gather floor and the dense-Adam step (``refmann bench pkm``).

:mod:`refmann.bench._proc` reads the machine and the process (/proc RSS, peak-RSS reset, tracemalloc) for both.
"""
