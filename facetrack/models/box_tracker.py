"""CRCT's recurrent facial box tracker BT (Aspandi et al., FG 2019, section III-A), after Re3.

Frames t-1 and t, both cropped around the previous box b_(t-1), go through one shared CNN; the embedding layer
(Eq. 3: an FC on the concatenated features) feeds an LSTM whose output goes to five region heads (silhouette,
eyebrows, nose, eyes, lips: ``REGIONS``), each an FC giving its landmarks; the box of frame t is the landmarks'
extent (Eq. 4). The LSTM state carries the track; the tracker resets it after ``seq_bt`` frames (SeqBT) and on
re-detection (Algorithm 1, line 12).

Training (``facetrack train configs/crct_bt*.yaml``, the temporal recipe kind): clips of pseudo-videos, each
frame pair cropped around the previous frame's ground-truth box moved by a drifting error (``PairClips``), L1
loss on the landmarks (the paper's BT loss), and the curriculum over sequence lengths: the LSTM is unrolled over
runs of 2, then 4, ... frames up to SeqBT as training advances (``set_epoch``).

Deviations (also in the recipe): a small CNN trained from scratch instead of the face-pretrained
Inception-ResNet; 64x64 crops instead of 128x128; teacher-forced training boxes (ground truth plus drift) rather
than the tracker's own; 68-point iBUG regions only.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from facetrack.models.base import LandmarkModel, batch_weight
from facetrack.models.registry import register_model, register_preset
from facetrack.models.temporal.base import TemporalState
from facetrack.models.temporal.local_motion import CoordinateCodec

# iBUG-68 facial regions of BT's five heads.
REGIONS: dict[str, tuple[int, int]] = {"silhouette": (0, 17), "eyebrows": (17, 27), "nose": (27, 36),
                                       "eyes": (36, 48), "lips": (48, 68)}


class CRCTBoxTracker(LandmarkModel):
    """BT: shared CNN on (crop_(t-1), crop_t) around b_(t-1) -> embedding -> LSTM -> region heads.

    ``width``: first conv width (doubling over five conv+BN+ReLU+pool blocks), ``embed``: the embedding layer,
    ``hidden``: the LSTM, ``seq_bt``: SeqBT (the longest run the LSTM is trained on, and the reset period when
    tracking), ``context``: crop side / longer side of the previous box (the card's crop scale).
    """

    arch = "crct-bt"

    def __init__(self, input_size: int = 64, width: int = 16, embed: int = 512, hidden: int = 256, seq_bt: int = 4,
                 context: float = 1.6, scheme: str = "ibug68", num_points: int = 68) -> None:
        if num_points != 68 or scheme != "ibug68":
            raise ValueError("the region heads are defined for the 68 iBUG points only")
        if input_size % 32 or seq_bt < 1 or context < 1.0:
            raise ValueError(f"need input_size a multiple of 32, seq_bt >= 1 and context >= 1 (got {input_size}, "
                             f"{seq_bt}, {context})")
        super().__init__(num_points=num_points, scheme=scheme, input_size=input_size)
        mods: list[nn.Module] = []
        cin = 3
        for i in range(5):
            cout = width * 2 ** i
            mods += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = cout
        self.cnn = nn.Sequential(*mods)
        features = cin * (input_size // 32) ** 2
        self.embedding = nn.Sequential(nn.Linear(2 * features, embed), nn.ReLU(inplace=True))
        self.lstm = nn.LSTMCell(embed, hidden)
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, 2 * (b - a)) for name, (a, b) in REGIONS.items()})
        self.codec = CoordinateCodec(input_size)
        self.seq_bt = int(seq_bt)
        self.context = float(context)
        self.curriculum = 2  # run length of the LSTM in training (set_epoch)
        self.hidden = int(hidden)
        self.lambda_c, self.use_confidence_loss, self.freeze_encoder = 0.0, False, False
        self.config = {"input_size": int(input_size), "width": int(width), "embed": int(embed),
                       "hidden": int(hidden), "seq_bt": self.seq_bt, "context": self.context, "scheme": scheme,
                       "num_points": int(num_points)}

    # ------------------------------------------------------------------------------------------- network

    def _features(self, crops: Tensor) -> Tensor:
        return self.cnn(self.normalize(crops)).flatten(1)

    def _heads(self, h: Tensor) -> Tensor:
        return torch.cat([self.heads[name](h).view(len(h), -1, 2) for name in REGIONS], 1)

    def init_state(self, batch: int = 1) -> TemporalState:
        """h_0 = c_0 = 0 for ``batch`` faces."""
        zeros = self.pixel_mean.new_zeros(batch, self.hidden)
        return TemporalState({"h": zeros, "c": zeros.clone()})

    def step(self, previous: Tensor, current: Tensor, state: TemporalState) -> tuple[dict[str, Tensor], TemporalState]:
        """Crops (B, 3, F, F) of frames t-1 and t around b_(t-1) -> {"coords"} (B, N, 2) normalised to frame t's
        crop, and the next LSTM state."""
        if state.batch != current.shape[0] or previous.shape != current.shape:
            raise ValueError(f"need equal crop batches and {state.batch} states, got {tuple(previous.shape)}, "
                             f"{tuple(current.shape)}")
        b = len(current)
        feats = self._features(torch.cat([previous, current]))
        h, c = self.lstm(self.embedding(torch.cat([feats[:b], feats[b:]], 1)),
                         (state.tensors["h"], state.tensors["c"]))
        return {"coords": self._heads(h)}, TemporalState({"h": h, "c": c})

    def forward_sequence(self, crops: Tensor) -> dict[str, Tensor]:
        """Pairs (B, T, 2, 3, F, F) (frame t-1's and t's crops around b_(t-1)) -> {"coords"} (B, T, N, 2); the
        LSTM restarts every ``curriculum`` pairs in training and every ``seq_bt`` pairs otherwise."""
        if crops.ndim != 6 or crops.shape[2] != 2:
            raise ValueError(f"expected crop pairs (B, T, 2, 3, F, F), got {tuple(crops.shape)}")
        b, t = crops.shape[:2]
        feats = self._features(crops.flatten(0, 2)).view(b, t, 2, -1)
        embedded = self.embedding(feats.flatten(2))
        run = self.curriculum if self.training else self.seq_bt
        h = c = embedded.new_zeros(b, self.hidden)
        out = []
        for i in range(t):
            if i % run == 0:
                h = c = embedded.new_zeros(b, self.hidden)
            h, c = self.lstm(embedded[:, i], (h, c))
            out.append(self._heads(h))
        return {"coords": torch.stack(out, 1)}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """A still crop seen as a pair of identical frames with a fresh state (what ``detect`` would see)."""
        out, _ = self.step(images, images, self.init_state(images.shape[0]))
        return out

    # ------------------------------------------------------------------------------------------- training

    def set_epoch(self, epoch: int, max_epochs: int) -> None:
        """The curriculum (after Re3): LSTM runs of 2, 4, 8, ... frames, doubling over the epochs up to SeqBT."""
        stages = max(1, math.ceil(math.log2(max(self.seq_bt, 2))))
        stage = min(stages - 1, int(epoch * stages / max(max_epochs, 1)))
        self.curriculum = min(self.seq_bt, 2 ** (stage + 1))

    def set_confidence_loss(self, enabled: bool) -> None:
        """No confidence branch (the temporal training calls this every epoch)."""

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        """L1 on the normalised landmarks (the paper's BT loss), weighted per landmark, mean over pairs."""
        pred = outputs["coords"].reshape(-1, self.num_points, 2)
        target = targets["coords"].to(pred).reshape(-1, self.num_points, 2)
        weight = batch_weight({k: v.reshape(-1, self.num_points) for k, v in targets.items() if k == "weight"}, pred)
        return ((pred - target).abs().sum(-1) * weight).mean()

    def decode(self, outputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Crop pixels (..., N, 2) and confidences of 1 (BT has none; the face validator judges its output)."""
        return self.codec.decode(outputs["coords"])

    def clip_dataset(self, source: Any, policy: Any, seed: int | None) -> Any:
        """Training / validation items for the temporal recipe: crop pairs around drifting previous boxes."""
        from facetrack.tracking.box_tracker import PairClips

        return PairClips(source, self.encode_targets, self.input_size, self.context, policy, seed)


@register_model("crct-bt")
def build_crct_bt(**config: Any) -> CRCTBoxTracker:
    """CRCT's recurrent box tracker; see :class:`CRCTBoxTracker`."""
    return CRCTBoxTracker(**config)


register_preset("crct-bt-64", "crct-bt", {"input_size": 64, "width": 8, "embed": 512, "hidden": 256, "seq_bt": 4})
