"""The peers of the paper's comparison, trained and scored by the same code as NEDS: NDT2
(:mod:`neds.peers.ndt2`, implemented from its paper) and POYO+ (:mod:`neds.peers.poyo_plus`, the
``torch_brain`` library's model). Both are :class:`neds.model.base.TrialModel` subclasses."""
