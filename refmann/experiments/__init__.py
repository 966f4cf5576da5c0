"""Experiments that reproduce the papers' claims at CPU scale; each module is a script that prints its table.

Run one with ``python -m refmann.experiments.NAME --help``. Every module offers ``run(...) -> rows``
(a list of dicts, one per table row), ``format_table(rows) -> str`` and ``main(argv=None)``; with
``--quick`` it runs at the sizes CI uses, and ``--out FILE.json`` writes the rows atomically. Their
tables, with the commands that produced them, are on the documentation's product-key, sketch and HMA pages.

- :mod:`refmann.experiments.pkm_search` — E8: product-key search is exact, and its speed-up over brute
  force against N.
- :mod:`refmann.experiments.capacity` — E1/E6: key-value memorisation at fixed compute (an MLP against
  MLP + memory layer as the number of pairs grows), and the product-key ablations.
- :mod:`refmann.experiments.facts_lm` — E5: a synthetic language with a table of facts; depth 2 vs
  depth 4 vs depth 2 + PKM (and Memory+): perplexity and fact recall.
- :mod:`refmann.experiments.sketch` — E2/E3 (the sketch memory page): fuzzy keys against SimHash's
  collision curves, and multi-hop traversal of random functional graphs with a memory at every layer.
- :mod:`refmann.experiments.longtail` — E4 (the HMA page): long-tailed classification, many/medium/few-shot
  accuracy of an MLP, the MLP with a sketch memory, and the MLP with HMA's head.
- :mod:`refmann.experiments.few_labels` — E7 (the HMA page): HMA's head with few labels per class and under
  a spurious-feature shift, its ablations, and how its predictions depend on the evaluation batch.
- :mod:`refmann.experiments.one_shot` — the SAM paper's Omniglot experiment (the one-shot page): LSTM, DAM
  and SAM on label-delayed episodes, accuracy by instance (1st, 2nd, 5th, 10th presentation) against the
  number of classes per episode.
- :mod:`refmann.experiments.curriculum` — the SAM paper's §4.3 (the results page): SAM, DAM and NTM on
  associative recall under the exponential curriculum, the level reached against training time and
  against sequences.
- :mod:`refmann.experiments.babi` — the DNC and SAM papers' bAbI table (the bAbI page): LSTM, DAM, SAM, DNC
  and SDNC trained jointly on the tasks, each task's test error rate beside the published numbers.
"""
