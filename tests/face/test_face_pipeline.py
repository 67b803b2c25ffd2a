"""The face pipeline on tiny models: landmark hints and pose images stated independently, end to end (short and
windowed), hybrid blending and tiling, bad inputs, cancel."""
import cv2
import numpy as np
import pytest
import torch

from engine.errors import CheckpointError, InputError, JobCancelled
from engine.models.mofa import flows
from engine.pipelines.base import CancelToken
from engine.pipelines.face.drawing import draw_pose_image
from engine.pipelines.face.pipeline import LDMK_KEY, SVD_KEY, FacePipeline, blend
from engine.pipelines.face.spec import SPEC
from engine.pipelines.face.tiny import TRAJ_KEY, synthetic_landmarks, write_tiny_checkpoints
from engine.pipelines.motion.pipeline import MotionPipeline
from tests.tolerance import assert_relative_close

OPTIONS = {"steps": 1, "size": 64, "seed": 3}
IMAGE = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def face_folders(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("face_ckpts")
    folders = {SVD_KEY: root / "svd", LDMK_KEY: root / "ldmk", TRAJ_KEY: root / "traj"}
    write_tiny_checkpoints(folders, seed=0)
    return folders


@pytest.fixture(scope="module")
def face_pipeline(face_folders: dict) -> FacePipeline:
    torch.set_num_threads(2)
    return FacePipeline.load(face_folders, "cpu", torch.float32)


def options(given=None):
    return SPEC.parse_options({**OPTIONS, **(given or {})})


def test_landmark_hints_by_hand():
    points = torch.zeros(3, 3, 2)
    points[0] = torch.tensor([[10.5, 20.75], [-3.0, 5.0], [10.25, 20.25]])  # point 2 lands on point 0's pixel
    points[1] = points[0] + torch.tensor([1.25, -2.5])
    points[2] = points[0] + torch.tensor([[0.5, 0.5], [4.0, 0.0], [-1.0, 3.0]])
    flow, mask = flows.landmark_hints(points, width=32, height=64, size=16)
    assert flow.shape == (2, 2, 16, 16) and mask.shape == (2, 2, 16, 16)
    # square positions: x * 16 / 32, y * 16 / 64 -> (5.25, 5.1875) -> pixel (row 5, col 5); (-1.5, 1.25) -> col 0
    assert mask[:, 0].sum().item() == 4  # two pixels per frame (points 0 and 2 share one)
    assert flow[0, :, 5, 5].tolist() == [1.25 * 0.5, -2.5 * 0.25]  # float displacement, not truncated
    assert flow[1, :, 5, 5].tolist() == [-0.5, 0.75]  # the later point (2) wins its shared pixel
    assert flow[1, :, 1, 0].tolist() == [2.0, 0.0]  # a point left of the picture is clipped to column 0


def test_pose_images_are_the_320_drawing_resized_bilinearly():
    landmarks = synthetic_landmarks(2, 96, 64)
    pose = FacePipeline.pose_images(landmarks, 96, 64)
    assert pose.shape == (2, 3, 64, 96) and pose.dtype == torch.float32
    square = landmarks[1] * np.array([320 / 96, 320 / 64], dtype=np.float32)
    expected = cv2.resize(draw_pose_image(square), (96, 64), interpolation=cv2.INTER_LINEAR) / 255.0
    assert_relative_close(pose[1].permute(1, 2, 0), torch.from_numpy(expected).float())
    values = set(np.unique(pose.numpy().round(4)))
    assert len(values) > 20  # soft bilinear edges, not only the 15 colours


def test_landmarks_follow_the_portrait_resize_and_crop():
    transform = (0.5, 8, 0)  # 160x128 portrait -> 80x64, cropped to 64x64 from x = 8
    points = FacePipeline.prepare_landmarks(np.full((2, 68, 2), [40.0, 20.0]), transform)
    assert points.dtype == np.float32 and points[0, 0].tolist() == [12.0, 10.0]


def test_short_run_end_to_end(face_pipeline: FacePipeline):
    portrait = np.repeat(np.repeat(IMAGE, 2, axis=0), 2, axis=1)  # 128x128 -> working 64x64
    landmarks = synthetic_landmarks(3, 128, 128)
    progress = []
    result = face_pipeline({"image": portrait, "landmarks": landmarks}, options(),
                           progress=lambda f, m: progress.append(m))
    assert result.frames.shape == (3, 64, 64, 3) and result.frames.dtype == np.uint8
    assert result.portrait.shape == (64, 64, 3) and result.pose_frames.shape == (3, 64, 64, 3)
    assert_relative_close(torch.from_numpy(result.landmarks), torch.from_numpy(landmarks / 2))
    assert "Denoising step 1/1" in progress and progress[-1] == "Done"
    again = face_pipeline({"image": portrait, "landmarks": landmarks}, options())
    np.testing.assert_array_equal(again.frames, result.frames)


def test_long_run_denoises_in_windows_of_25(face_pipeline: FacePipeline):
    calls = []
    hook = face_pipeline.unet.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape[:2])))
    try:
        result = face_pipeline({"image": IMAGE, "landmarks": synthetic_landmarks(27, 64, 64)}, options())
    finally:
        hook.remove()
    assert calls == [(2, 25), (2, 25)]  # windows (1, 25) and (3, 27), CFG batch of 2
    assert result.frames.shape == (27, 64, 64, 3)


class FakeTrajectoryPipeline:
    """Stands in for the Trajectories task's pipeline: a drag flow coded by frame, and a ControlNet of zeros."""

    def __init__(self, like: torch.nn.Module) -> None:
        self.cmp = torch.nn.Identity()
        self.controlnet = like
        self.asked = []

    def motion_field(self, image, trajectories, brush, frames):
        self.asked.append((trajectories, brush, frames))
        return torch.arange(1.0, frames).view(-1, 1, 1, 1).expand(-1, 2, *image.shape[:2]).clone()


def test_hybrid_drag_flow_is_tiled_as_the_hybrid_code_does(face_pipeline: FacePipeline):
    fake = FakeTrajectoryPipeline(face_pipeline.controlnet)
    face_pipeline.with_trajectory_adapter(fake)
    try:
        drag = face_pipeline.trajectory_flow(IMAGE, [[[1, 1], [5, 5]]], 30)
    finally:
        face_pipeline.trajectory = None
    assert fake.asked == [([[[1, 1], [5, 5]]], None, 25)]
    assert drag[:, 0, 0, 0].tolist() == list(range(1, 25)) + list(range(1, 6))  # 29 flows: 24, then again


def test_hybrid_blend_by_hand():
    face, drag = torch.full((4, 3, 4, 4), 2.0), torch.full((4, 3, 4, 4), -1.0)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1.0  # top half face
    mixed = blend(face, drag, mask)
    assert mixed[:, :, :2].unique().tolist() == [2.0] and mixed[:, :, 2:].unique().tolist() == [-1.0]


def test_hybrid_run_needs_the_adapter_and_a_mask(face_pipeline: FacePipeline):
    inputs = {"image": IMAGE, "landmarks": synthetic_landmarks(3, 64, 64), "trajectories": [[[10, 10], [20, 20]]]}
    with pytest.raises(InputError, match="landmark mask"):
        face_pipeline(inputs, options())
    with pytest.raises(CheckpointError, match="mofa_traj"):
        face_pipeline({**inputs, "mask": np.full((64, 64), 255, np.uint8)}, options())


def test_hybrid_run_uses_both_adapters(face_pipeline: FacePipeline, face_folders: dict):
    motion = MotionPipeline.load(face_folders, "cpu", torch.float32)
    ran = []
    hooks = [net.register_forward_pre_hook(lambda m, a, name=name: ran.append(name))
             for name, net in (("face", face_pipeline.controlnet), ("drag", motion.controlnet))]
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 10:50] = 255
    face_pipeline.with_trajectory_adapter(motion)
    try:
        result = face_pipeline({"image": IMAGE, "landmarks": synthetic_landmarks(3, 64, 64),
                                "trajectories": [[[50, 50], [58, 40]]], "mask": mask}, options())
        assert set(face_pipeline.networks()) >= {"trajectory_controlnet", "trajectory_cmp"}
    finally:
        face_pipeline.trajectory = None
        for hook in hooks:
            hook.remove()
    assert ran == ["face", "drag"] and result.frames.shape == (3, 64, 64, 3)


@pytest.mark.parametrize("inputs, given, message", [
    ({"landmarks": np.zeros((3, 67, 2))}, {}, "shape"),
    ({"landmarks": np.zeros((1, 68, 2))}, {}, "at least 2 frames"),
    ({"landmarks": np.full((2, 68, 2), np.nan)}, {}, "NaN"),
    ({"image": IMAGE.astype(np.float32)}, {}, "RGB picture"),
    ({}, {"size": 100}, "multiple of 64"),
])
def test_bad_inputs(face_pipeline: FacePipeline, inputs, given, message):
    base = {"image": IMAGE, "landmarks": synthetic_landmarks(2, 64, 64)}
    with pytest.raises(InputError, match=message):
        face_pipeline({**base, **inputs}, options(given))


def test_cancel_stops_before_denoising(face_pipeline: FacePipeline):
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        face_pipeline({"image": IMAGE, "landmarks": synthetic_landmarks(3, 64, 64)}, options(), cancel=token)
