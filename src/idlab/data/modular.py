"""Modular arithmetic a ∘ b = c (mod p): the grokking task, generated in memory, with disjoint val and test splits."""
from __future__ import annotations

import torch

from idlab.data.base import Split, TensorDataModule, seeded_split
from idlab.data.spec import DataSpec

OPS = ("add", "sub", "mul", "div")


class ModularArithmetic(TensorDataModule):
    """Sequences [a, op, b, =] labelled c = a ∘ b mod p; every op has its own token so checkpoints transfer."""

    def __init__(self, p: int = 97, op: str = "div", train_frac: float = 0.5, val_frac: float = 0.5,
                 split_seed: int = 0, batch_size: int = 512, eval_batch_size: int | None = None,
                 on_device: bool = True, seed: int = 0) -> None:
        super().__init__(batch_size, eval_batch_size, on_device, seed)
        if op not in OPS:
            raise ValueError(f"data.op={op!r} is not an operation; choose one of {OPS}")
        if p < 3 or any(p % q == 0 for q in range(2, int(p**0.5) + 1)):
            raise ValueError(f"data.p={p} must be a prime ≥ 3 (division needs inverses mod p)")
        if not 0.0 < train_frac < 1.0:
            raise ValueError(f"data.train_frac={train_frac} must lie strictly between 0 and 1")
        if not 0.0 < val_frac < 1.0:
            raise ValueError(f"data.val_frac={val_frac} must lie strictly between 0 and 1 (the share of the held-out "
                             "equations used for validation; the rest is the test split)")
        self.p, self.op, self.train_frac, self.val_frac, self.split_seed = p, op, train_frac, val_frac, split_seed
        sizes = self.sizes()
        if min(sizes["train"], sizes["val"], self.count() - sizes["train"] - sizes["val"]) < 1:
            raise ValueError(f"data.train_frac={train_frac}, data.val_frac={val_frac} leave an empty split of the "
                             f"{self.count()} equations (mod {p}); move them away from 0 and 1")
        self.spec = DataSpec("tokens", (4,), num_classes=p, vocab_size=p + len(OPS) + 1, name=f"modular_{op}")

    def count(self) -> int:
        """Number of equations of the task (b ≠ 0 for division)."""
        return self.p * (self.p - 1 if self.op == "div" else self.p)

    def sizes(self) -> dict[str, int]:
        """Split sizes: train, val, and test (-1: the rest)."""
        n_train = round(self.train_frac * self.count())
        return {"train": n_train, "val": round(self.val_frac * (self.count() - n_train)), "test": -1}

    def equations(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All (a, b) pairs of the task (b ≠ 0 for division) as token rows and their answers."""
        p = self.p
        a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).T
        if self.op == "div":
            a, b = a[b != 0], b[b != 0]
        c = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
             "div": lambda: a * torch.tensor([pow(int(v), p - 2, p) for v in b])}[self.op]() % p
        op_tok = torch.full_like(a, p + OPS.index(self.op))
        eq_tok = torch.full_like(a, p + len(OPS))
        return torch.stack([a, op_tok, b, eq_tok], dim=1), c

    def load(self) -> dict[str, Split]:
        """Seeded split: `train_frac` of the equations train; of the held-out rest, `val_frac` is the validation
        split (checkpoint choice, grokking curves) and the remainder the disjoint test split (reported numbers)."""
        x, y = self.equations()
        idx = seeded_split(len(x), self.sizes(), self.split_seed)
        return {name: Split(x[i], y[i]) for name, i in idx.items()}
