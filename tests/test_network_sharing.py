"""Networks are the unit of caching: two tasks on the same SVD checkpoint share one UNet, VAE and image encoder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import Engine, EngineConfig, media
from engine.runtime import NetworkKey
from engine.tasks import TaskSpec, discover_tasks
from tests.fake_tasks.svd_probe.job import SEEN

PROBE = TaskSpec(name="svd_probe", title="SVD probe", description="test task", checkpoints=("svd_xt_11",),
                 inputs=(), options=(), package="tests.fake_tasks.svd_probe")


def test_motion_then_another_svd_task_loads_the_unet_once(tiny_hub: Path, tmp_path: Path) -> None:
    engine = Engine(EngineConfig(device="cpu", outputs=tmp_path, cache_dir=tiny_hub, offline=True),
                    tasks={**discover_tasks(), "svd_probe": PROBE})
    picture = tmp_path / "picture.png"
    media.write_png(picture, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    engine.run("motion", {"image": picture, "trajectories": [[[10, 10], [30, 20]]]},
               {"frames": 2, "steps": 1, "size": 64, "seed": 1})
    motion = engine.pipeline("motion")
    SEEN.clear()
    engine.run("svd_probe", {}, {})
    probe = SEEN[0]
    assert probe["unet"] is motion.unet and probe["vae"] is motion.vae
    assert probe["image_encoder"] is motion.image_encoder
    unet_keys = [key for key in engine.models.keys()
                 if isinstance(key, NetworkKey) and key.kind.endswith("MofaSVDUNet")]
    assert len(unet_keys) == 1 and engine.models.builds[unet_keys[0]] == 1
