"""Li et al. 2018 on mnist_mini (results 1, 2), LoRA vs subspace (3) and re-projection (6): the plans."""
from __future__ import annotations

from repro.steps import Result, Settings, Step, export_step, sweep_step, train_step

EPOCHS = 30                # mnist_mini: 4,000 digits, 32 steps/epoch → 960 steps per run
SUBSPACE_LR = 0.01         # Adam on θ_d; calibrated on CPU (see repro/README.md): 1e-3 needs ≫ 100 epochs here
BASELINE_LR = 0.001        # the directly trained network keeps Li et al.'s Adam 1e-3 ("best directly trained")
D_GRID = (100, 200, 300, 500, 750, 1000, 1500, 2500, 4000)
SEEDS = (0, 1, 2)
MNIST_EXPS = {"fc": "li_mnist_fc", "lenet": "li_mnist_lenet", "fc_shuffled_pixels": "li_mnist_fc_shuffled_pixels",
              "lenet_shuffled_pixels": "li_mnist_lenet_shuffled_pixels"}
GRID_NETS = ((50, 1), (400, 1), (50, 5), (400, 5))   # (width, depth); (200, 2) is li_mnist/fc
GRID_VALUES = (200, 300, 500, 750, 1000, 1500, 2500)
# (training digits, epochs, d grid, folder suffix): 1,000 digits × 200 epochs = 1,600 steps; 4,000 × 100 = 3,200.
MEM_SCALES = ((1000, 200, (100, 300, 500, 1000, 2000, 4000, 8000, 16000), ""),
              (4000, 100, (300, 500, 1000, 2000, 4000, 8000, 16000, 32000), "_n4000"))
LORA_RANKS = (1, 2, 4, 8, 16, 32)
REPROJECT_FROM = (100, 300)  # d of the first subspace (below / at LeNet's d_int90 on mnist_mini)
REPROJECT_VALUES = (10, 30, 100, 200, 300, 500, 1000, 2000)
REPROJECT_SEED = 1         # adapt.seed of the fresh projection (the first one used adapt.seed=0)


def mnist_head(exp: str, *extra: str) -> tuple[str, ...]:
    """A Li et al. MNIST experiment on mnist_mini at the cheap scale: 30 epochs, subspace lr 1e-2."""
    return (f"+exp={exp}", "data=mnist_mini", f"trainer.max_epochs={EPOCHS}", f"optim.optimizer.lr={SUBSPACE_LR}",
            *extra)


def li_sweep(s: Settings, name: str, n_jobs: int = 3) -> Step:
    """One of the four d-sweeps of result 1, in root/li_mnist/<name>."""
    extra = ("optim=adam",) if name == "lenet_shuffled_pixels" else ()  # same optimiser as unshuffled LeNet
    return sweep_step(s, f"li_mnist/{name}", s.root / "li_mnist" / name, mnist_head(MNIST_EXPS[name], *extra),
                      D_GRID, SEEDS, n_jobs, (f"optim.optimizer.lr={BASELINE_LR}",))


def li_mnist(s: Settings) -> Result:
    """Result 1a: FC vs LeNet d_int90 and shuffled pixels (four sweeps in parallel)."""
    return Result("li_mnist", "Li et al. 2018: FC vs LeNet and shuffled pixels on MNIST",
                  ((*(li_sweep(s, n) for n in MNIST_EXPS),),),
                  f"mnist_mini (4,000 train / 500 test digits), {EPOCHS} epochs, seeds {list(SEEDS)}, "
                  f"d ∈ {list(D_GRID)}")


def li_mnist_grid(s: Settings) -> Result:
    """Result 1b: FC width × depth grid, d_int90 against D (plus the 200×2 FC of result 1a)."""
    steps = [li_sweep(s, "fc")]
    for width, depth in GRID_NETS:
        folder = s.root / "li_mnist_grid" / f"w{width}_l{depth}"
        head = mnist_head("li_mnist_fc", f"model.width={width}", f"model.depth={depth}")
        steps.append(sweep_step(s, f"li_mnist_grid/w{width}_l{depth}", folder, head, GRID_VALUES, (0, 1), 3,
                                (f"optim.optimizer.lr={BASELINE_LR}",)))
    return Result("li_mnist_grid", "Li et al. 2018: FC width/depth grid, d_int90 vs D", (tuple(steps),),
                  f"mnist_mini, {EPOCHS} epochs, seeds [0, 1], FC (width, depth) ∈ {[list(n) for n in GRID_NETS]} "
                  f"+ (200, 2), d ∈ {list(GRID_VALUES)}")


def memorisation(s: Settings) -> Result:
    """Result 2: d_int90 of training accuracy with real vs 100 % shuffled labels, FC 5×400, at two label counts."""
    steps = []
    for labels, epochs, values, suffix in MEM_SCALES:
        for name, fraction in (("real_labels", 0.0), ("shuffled_labels", 1.0)):
            head = ("+exp=li_mnist_shuffled_labels", "data=mnist_mini", f"data.val_size={4500 - labels}",
                    f"data.shuffle_labels={fraction}", f"trainer.max_epochs={epochs}",
                    "trainer.check_val_every_n_epoch=10", f"optim.optimizer.lr={SUBSPACE_LR}")
            steps.append(sweep_step(s, f"memorisation/{name}{suffix}", s.root / "memorisation" / f"{name}{suffix}",
                                    head, values, (0, 1), 4, (f"optim.optimizer.lr={BASELINE_LR}",)))
    scales = "; ".join(f"{labels:,} training digits (val_size {4500 - labels}), {epochs} epochs, d ∈ {list(values)}"
                       for labels, epochs, values, _ in MEM_SCALES)
    return Result("memorisation", "Li et al. 2018: memorising shuffled labels", (tuple(steps),),
                  f"mnist_mini, FC 784-5×400-10, metric train/acc, threshold 0.89, seeds [0, 1]; {scales}")


def lora_vs_subspace(s: Settings) -> Result:
    """Result 3: LoRA rank sweep and the LeNet subspace d-sweep (shared with result 1) on one parameter axis."""
    lora = sweep_step(s, "lora_vs_subspace/lora", s.root / "lora_vs_subspace" / "lora",
                      ("+exp=lora_lenet_mnist", f"trainer.max_epochs={EPOCHS}"), LORA_RANKS, SEEDS, 4)
    shared = li_sweep(s, "lenet")
    return Result("lora_vs_subspace", "Hu et al. 2021: LoRA r90 vs subspace d90, LeNet on mnist_mini",
                  ((lora, shared),), f"mnist_mini, LeNet, {EPOCHS} epochs, seeds {list(SEEDS)}, r ∈ "
                  f"{list(LORA_RANKS)} (Adam 1e-3, every layer + head LoRA), d as result 1",
                  extra_dirs=(shared.folder,))


def reproject(s: Settings) -> Result:
    """Result 6: subspace-train (d_A), export θ0 + P·θ_d, re-project from it with a fresh P and sweep d again."""
    seeds = s.pick_seeds(SEEDS)
    stage_a, exports, stage_b = [], [], []
    for d_a in REPROJECT_FROM:
        base = s.root / "reproject" / f"first_d{d_a}"
        for seed in seeds:
            run = base / f"seed{seed}"
            stage_a.append(train_step(s, f"reproject/first_d{d_a}/seed{seed}", run,
                                      mnist_head("li_mnist_lenet", f"adapt.d={d_a}", f"seed={seed}")))
            exports.append(export_step(f"reproject/export_d{d_a}/seed{seed}", run, base / f"theta_seed{seed}.pt"))
        head = mnist_head("li_mnist_lenet", f"adapt.init_from={base}/theta_seed${{seed}}.pt",
                          f"++adapt.seed={REPROJECT_SEED}")
        stage_b.append(sweep_step(s, f"reproject/from_d{d_a}", s.root / "reproject" / f"from_d{d_a}", head,
                                  REPROJECT_VALUES, SEEDS, 4, (f"optim.optimizer.lr={BASELINE_LR}", "~adapt.seed")))
    scratch = li_sweep(s, "lenet")
    return Result("reproject", "Seed 000: re-projecting a subspace-trained LeNet onto a fresh random subspace",
                  ((*stage_a, scratch), tuple(exports), tuple(stage_b)),
                  f"mnist_mini, LeNet, {EPOCHS} epochs, seeds {list(SEEDS)}; first subspace d_A ∈ "
                  f"{list(REPROJECT_FROM)} (adapt.seed=0), second d_B ∈ {list(REPROJECT_VALUES)} "
                  f"(adapt.seed={REPROJECT_SEED}); baseline: full fine-tuning from θ_A",
                  extra_dirs=(scratch.folder,))
