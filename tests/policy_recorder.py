"""A policy wrapper for the driver's tests: it records every observation its predictor sees."""


class Recorder:
    """Wraps a policy (``settings``, ``reads``, ``bind``, ``name`` pass through) and records what it predicts on.

    Every observation the bound predictor sees is appended, copied, to ``seen`` (a new list unless one is given,
    so that two recorders can share one).
    """

    def __init__(self, policy, seen=None):
        self.policy, self.seen = policy, [] if seen is None else seen
        self.settings, self.reads, self.name = policy.settings, policy.reads, policy.name

    def bind(self, context):
        inner, seen = self.policy.bind(context), self.seen

        class Predictor:
            reads = inner.reads

            def predict(self, obs, deterministic=True):
                seen.append(obs.copy())
                return inner.predict(obs, deterministic=deterministic)

        return Predictor()
