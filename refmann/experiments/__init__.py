"""Experiments that reproduce the papers' claims at CPU scale; each module is a script that prints its table.

Run one with ``python -m refmann.experiments.NAME --help``. Every module offers ``run(...) -> rows``
(a list of dicts, one per table row), ``format_table(rows) -> str`` and ``main(argv=None)``; with
``--quick`` it runs at the sizes CI uses, and ``--out FILE.json`` writes the rows atomically. Their
tables, with the commands that produced them, are on the documentation's product-key page.

- :mod:`refmann.experiments.pkm_search` — E8: product-key search is exact, and its speed-up over brute
  force against N.
- :mod:`refmann.experiments.capacity` — E1/E6: key-value memorisation at fixed compute (an MLP against
  MLP + memory layer as the number of pairs grows), and the product-key ablations.
- :mod:`refmann.experiments.facts_lm` — E5: a synthetic language with a table of facts; depth 2 vs
  depth 4 vs depth 2 + PKM (and Memory+): perplexity and fact recall.
"""
