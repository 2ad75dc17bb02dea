"""Use this engine as an accelerated backend for models written with other flow libraries.

- ``eoflow_fast.compat.freia``: FrEIA 0.2's GLOWCouplingBlock, RNVPCouplingBlock,
  AffineCouplingOneSided and AllInOneBlock on the fused coupling op (change one import).
- ``eoflow_fast.compat.normflows``: normflows 1.7's AffineCoupling, AffineCouplingBlock and GlowBlock.
- ``eoflow_fast.compat.foreign.ForeignFlow``: any FrEIA / normflows model behind this project's flow
  interface; ``EOFlow.from_module(model, input_shape)`` trains it with the EOFlow objective.
"""
