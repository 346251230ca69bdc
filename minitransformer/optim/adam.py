"""Adam (Kingma & Ba, 2015), with decoupled weight decay (AdamW, Loshchilov & Hutter) as an option.

For each parameter θ with gradient g, at step t = 1, 2, …:

    m = β₁·m + (1 − β₁)·g              running mean of the gradient
    v = β₂·v + (1 − β₂)·g²             running mean of its square
    m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)   bias correction: m and v start at 0
    θ = θ − lr·( m̂ / (√v̂ + ε) + λ·θ )

Dividing by √v̂ gives every parameter a step of about lr whatever the scale of its
gradient. The weight decay λ·θ is "decoupled": it is added to the step, not to g, so it is
not rescaled by √v̂. The paper trains with β₁ = 0.9, β₂ = 0.98, ε = 1e-9 and λ = 0.
"""

from ..arrays import array_module


class Adam:
    def __init__(self, params, beta1=0.9, beta2=0.98, eps=1e-9, weight_decay=0.0):
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.step_count = 0
        xp = array_module(*params.values())
        self.m = {key: xp.zeros_like(value) for key, value in params.items()}  # first moments
        self.v = {key: xp.zeros_like(value) for key, value in params.items()}  # second moments

    def step(self, params, grads, lr):
        """Update ``params`` in place from ``grads`` (dicts under the same keys)."""
        self.step_count += 1
        t = self.step_count
        correction1 = 1.0 - self.beta1**t
        correction2 = 1.0 - self.beta2**t
        for key, param in params.items():
            grad, m, v = grads[key], self.m[key], self.v[key]
            xp = array_module(param)
            # in place, to keep the update to a few passes over memory
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * (grad * grad)
            denominator = xp.sqrt(v / correction2)
            denominator += self.eps
            update = (m / correction1) / denominator
            if self.weight_decay:
                update += self.weight_decay * param
            param -= lr * update

    def state_dict(self):
        """Moments and step count, for a checkpoint (keys prefixed m./v.)."""
        state = {f"m.{key}": value for key, value in self.m.items()}
        state.update({f"v.{key}": value for key, value in self.v.items()})
        return state

    def load_state_dict(self, state, step_count):
        """Restore moments saved by state_dict; an incompatible checkpoint is an error."""
        for key in self.m:
            for prefix, moments in (("m", self.m), ("v", self.v)):
                saved = state.get(f"{prefix}.{key}")
                if saved is None:
                    raise ValueError(f"optimizer state has no {prefix}.{key}")
                if tuple(saved.shape) != tuple(moments[key].shape):
                    raise ValueError(
                        f"optimizer state {prefix}.{key} has shape {tuple(saved.shape)}, "
                        f"the model needs {tuple(moments[key].shape)}"
                    )
                moments[key][...] = array_module(moments[key]).asarray(saved)
        self.step_count = int(step_count)
