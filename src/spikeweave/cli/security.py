"""Security commands on a trained run: ``attack``, ``backdoor scan`` and ``backdoor defend``."""

from __future__ import annotations

from pathlib import Path

import typer

from .help_text import DEVICE_HELP


def attack(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    attack: str = typer.Option(
        ...,
        help="Attack. One of: fgsm | pgd | adaptive | adaptive-surrogate | transfer | square | "
        "autoattack (the AutoAttack-style ensemble of the Adversarial Robustness Toolbox: "
        "APGD-CE, APGD-T, DeepFool, Square at 5,000 queries; pip install "
        "'spikeweave[attacks]').",
    ),
    eps: str = typer.Option(
        ...,
        help="Budgets in [0, 1] pixel units, e.g. 0,0.05,0.1,0.3 (L2: up to √pixels). Each "
        "attack and ε is kept in attack.json.",
    ),
    steps: int = typer.Option(
        None,
        help="PGD steps (pgd, adaptive, adaptive-surrogate, transfer; default 20); APGD "
        "iterations (autoattack; default 100).",
    ),
    norm: str = typer.Option(
        None,
        help="Norm (pgd, adaptive, adaptive-surrogate, transfer, square, autoattack). One of: "
        "linf | l2 (default linf).",
    ),
    samples: int = typer.Option(1000, help="Test images attacked (a seeded subset)."),
    queries: int = typer.Option(
        None, help="Square's queries per image (square: default 1000; autoattack: 5000)."
    ),
    source: Path = typer.Option(None, help="Transfer attack: the source run directory."),
    out_dir: Path = typer.Option(None, help="Where attack.json / attack.png go (default: run)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    robustbench: bool = typer.Option(
        False,
        "--robustbench",
        help="Also write a RobustBench-style record per ε (robustbench-<norm>-<eps>.json: "
        "threat model, ε, clean, robust and per-image worst-case accuracy, n, seed, version, "
        "commit).",
    ),
) -> None:
    """Attack a trained run; writes attack.json (robust accuracy per ε) and an accuracy-vs-ε
    PNG."""
    from ..security.cli import attack_command, parse_eps

    result = attack_command(
        run_dir, attack, parse_eps(eps), steps, norm, samples=samples, queries=queries,
        source=source, out_dir=out_dir, device=device, robustbench=robustbench,
    )  # fmt: skip
    for e, acc in zip(result["eps"], result["robust_accuracy"], strict=True):
        typer.echo(f"eps {e:g}: robust accuracy {acc:.2%}")


def backdoor_scan(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    steps: int = typer.Option(50, help="Trigger-generator steps per class."),
    samples: int = typer.Option(1000, help="Clean images if the run held out no validation."),
    seed: int = typer.Option(0, help="Seed of the search."),
    out_dir: Path = typer.Option(None, help="Where backdoor_scan.json goes (default: run)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Search triggers for every class; the attacked class is the one whose triggers succeed."""
    from ..security.backdoor_cli import scan_command

    r = scan_command(
        run_dir, steps=steps, samples=samples, seed=seed, out_dir=out_dir, progress=progress,
        device=device,
    )  # fmt: skip
    for k, score in enumerate(r["scores"]):
        typer.echo(f"class {k}: trigger success {score:.2%}")
    typer.echo(f"suspected target: class {r['target']} (anomaly index {r['anomaly_index']:.1f})")


def backdoor_defend(
    run_dir: Path = typer.Argument(..., help="A directory written by `spikeweave train`."),
    target: str = typer.Option("auto", help="The attacked class, or auto to detect it."),
    defense: str = typer.Option("mesa", help="One of: mesa | single | true | clean."),
    betas: str = typer.Option("0.9,0.8,0.5", help="MESA thresholds β, one generator each."),
    alpha: float = typer.Option(0.1, help="MESA weight α of the entropy (MINE) term."),
    mesa_steps: int = typer.Option(0, help="Generator steps per β (0: 10 epochs of data)."),
    scan_steps: int = typer.Option(50, help="With --target auto: search steps per class."),
    finetune_epochs: int = typer.Option(10, help="Fine-tuning epochs."),
    finetune_lr: float = typer.Option(1e-2, help="Fine-tuning SGD learning rate."),
    trigger_fraction: float = typer.Option(0.2, help="Share of each batch given a trigger."),
    samples: int = typer.Option(1000, help="Clean images if the run held out no validation."),
    seed: int = typer.Option(0, help="Seed of the search and the fine-tuning."),
    out_dir: Path = typer.Option(None, help="Where results go (default: the run, and beside it)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Remove a backdoor: model its triggers (MESA) or a baseline's, fine-tune with correct
    labels; writes backdoor_defend.json, trigger grids and a defended run."""
    from ..security.backdoor_cli import defend_command, parse_betas
    from ..security.mesa import FinetuneOptions

    ft = FinetuneOptions(lr=finetune_lr, epochs=finetune_epochs, trigger_fraction=trigger_fraction)
    r = defend_command(
        run_dir, target, defense=defense, betas=parse_betas(betas), alpha=alpha,
        mesa_steps=mesa_steps, scan_steps=scan_steps, finetune_options=ft, samples=samples,
        seed=seed, out_dir=out_dir, progress=progress, device=device,
    )  # fmt: skip
    for when in ("before", "after"):
        m = r[when]
        asr = "n/a" if m["asr"] is None else f"{m['asr']:.2%}"
        typer.echo(f"{when}: clean accuracy {m['clean_accuracy']:.2%}, attack success {asr}")
    typer.echo(f"target class {r['target']}; defended run written to {r['defended_run']}")
