"""DEFT: ``model`` (G lite encoders trained stage by stage), ``presets`` (Table 2), ``annealing``
(annealing test and information freezing points), ``family`` (the "deft" ModelSpec)."""
