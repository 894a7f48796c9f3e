"""The RLHF loop: SFT, then rounds of pairs -> labels -> reward model -> RL -> evaluation.

Example::

    from agents.pipeline import PipelineConfig, run_pipeline

    run_dir = run_pipeline(PipelineConfig(run_dir="runs/rlhf", rounds=2))
    # run_dir/summary.json: per round gold_sft, gold_policy, proxy_policy, kl, rm_accuracy, ...

From the command line: ``textrl pipeline --run_dir runs/rlhf`` (``--resume`` continues a stopped run,
``textrl plot runs/rlhf`` redraws its plots).
"""

from agents.pipeline.config import PipelineConfig, resolve_config
from agents.pipeline.control import GoldProxyDivergence, PipelineInterrupted
from agents.pipeline.labelers import LABELERS, Labeler, Pair, SimulatedLabeler
from agents.pipeline.plots import make_plots
from agents.pipeline.runner import load_run_config, resume_pipeline, run_pipeline

__all__ = [
    "LABELERS",
    "GoldProxyDivergence",
    "Labeler",
    "Pair",
    "PipelineConfig",
    "PipelineInterrupted",
    "SimulatedLabeler",
    "load_run_config",
    "make_plots",
    "resolve_config",
    "resume_pipeline",
    "run_pipeline",
]
