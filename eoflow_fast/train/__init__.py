"""The training engine: one loop for every model family.

* :mod:`~eoflow_fast.train.contract`    what a trainable model exposes (``loss_terms`` and hooks)
* :mod:`~eoflow_fast.train.registry`    model families for ``eoflow-fast train MODEL``
* :mod:`~eoflow_fast.train.engine`      ``train(model, dataset, config, run_dir, ...)``, ``load_run(run_dir)``
* :mod:`~eoflow_fast.train.checkpoint`  atomic, versioned checkpoints
* :mod:`~eoflow_fast.train.distributed` DDP set-up and the world-size-independent batch sampler
* :mod:`~eoflow_fast.train.logging`     ``metrics.jsonl`` records and the progress bar
* :mod:`~eoflow_fast.train.toy`         the ``toy`` family, the smallest end-to-end example
"""
