"""The papers' numbers, with their sources, and how our setups differ from theirs (no result of ours lives here).

Sources: /work/shared/reference/subspace.md §2 (Li et al. 2018: the authors' notebook "NB" and quoted paper text
"Q"), lora_peft_grokking.md §3.3 (grokking times), activation_id.md §1.4 (Brown et al. 2022's figures).
"""
from __future__ import annotations

# Li et al. 2018, MNIST d_int90 against their global baseline 1.0 (threshold 0.90 test accuracy), and against the
# directly trained network ("individual") where the notebook has it.
LI_MNIST = {
    "fc": {"global": 750, "individual": None, "source": "NB cell 41 and Q; NB individual baselines of 2×400 nets "
                                                         "give 525–575"},
    "lenet": {"global": 290, "individual": 275, "source": "Q (\"290 vs 750\"); NB summary table 275 (individual)"},
    "fc_shuffled_pixels": {"global": 750, "individual": None, "source": "Q, NB"},
    "lenet_shuffled_pixels": {"global": 1400, "individual": None, "source": "Q (\"increases from 290 to 1400\"), "
                                                                           "NB cell 54"},
}
LI_GRID = {"D_ratio": 24.1, "d_ratio": 1.33, "source": "Q: over the FC width × depth grid D varies 24.1×, "
                                                        "d_int90 1.33×"}
LI_MEMORISATION = {"d_int90": 190_000, "labels": 50_000, "per_label": 3.8,
                   "source": "Q (\"3.8 floats per memorized label\"), NB; training accuracy, factor 0.89"}
# Power et al. recipe, one seed, H100 (lora_peft_grokking.md §3.3): first step with train / val accuracy ≥ 99 %.
GROK_NOTES = {"frac0.5_wd1": (600, 3000), "frac0.3_wd1": (300, 15600), "frac0.5_wd0": (400, None)}
GROK_NOTES_CAP = 24_131  # the wd-0 run was stopped here without generalising
BROWN_LLID = ("Brown et al. 2022 (grok_id.png): validation ID starts near 25, falls sharply when validation "
              "accuracy jumps and ends near 3–15; runs that do not grok stay near 19–22")

# How each reproduction's setup differs from the paper's (method facts, no measured numbers).
DIFFERENCES = {
    "li_mnist": "Li et al. trained θ_d for 100 epochs; the epochs, batch and learning rates that ran here are listed "
                "below each table, read from the runs. Shuffled-pixel LeNet uses Adam like plain LeNet, so that only "
                "the pixel order differs (Li's loop used SGD 0.01).",
    "memorisation": "Li et al. memorised 50,000 labels with Adam 1e-4 for 500 epochs; the label counts and schedules "
                    "that ran here are listed below the table.",
    "lora_vs_subspace": "LoRA adapts every layer and the head of a frozen random init (no pretraining); Hu et al. "
                        "report no r90, only that accuracy rises with r and saturates.",
    "grokking_id": "idlab's activation-ID callback reads the answer position of blocks.*.attn / blocks.*.mlp on the "
                   "whole train and held-out sets; Brown et al. flattened all positions of GPT-2 blocks with dropout "
                   "and Adam weight decay 1e-4 behind a long warm-up, so only the timing of the ID relative to the "
                   "accuracy jump is comparable, not its value.",
    "finetune_id": "An offline analogue of Aghajanyan et al.: θ0 is a snapshot of a transformer pretrained on a·b "
                   "mod 97 (step 0 is its untrained init), the task is a÷b, every parameter moves in one Fastfood "
                   "subspace, and d_int90 is the first d whose seed-mean held-out accuracy reaches 0.9 (a fixed "
                   "baseline of 1.0).",
    "reproject": "Not a paper result (seed 000's question): θ_A = θ0 + P_A·θ_d of a LeNet trained at d_A is exported "
                 "and becomes θ0 of a second d-sweep with a fresh projection P_B; its individual baseline is full "
                 "fine-tuning from θ_A. If the two subspaces simply added up, d_A + d_B90 would equal the from-init "
                 "d_int90.",
}
