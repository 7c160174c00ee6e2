"""Write model.pt into tiny FunASR model folders: run with the funasr test venv's python.

    python tests/support/funasr_weights.py ROOT     # ROOT holds asr/, vad/ and punc/

Each model is built by FunASR's own ``AutoModel.build_model`` from its folder (configuration.json
and config.yaml, as for a downloaded model; no model.pt yet, so FunASR leaves its seeded random
initialisation), and its state dict is saved with ``torch.save``. The VAD's weights are then set
so the network works as an energy detector (see ``make_energy_detector``). Afterwards each folder
is loaded back through ``AutoModel.build_model``, now with model.pt, and must give the same
weights: the folders load the way the engine will load them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from funasr import AutoModel

# Frames whose mean normalised log-mel energy (am.mvn centres speech near 0) lies above this
# count as speech: digital silence sits near -6.4, festival's speech frames above -1.7 (the
# quiet start and end of a sentence) and around +0.3 in the middle.
SPEECH_THRESHOLD = -3.0
# How sure the network is either way: silence logit at zero energy, and its drop per unit.
SILENCE_LOGIT = 8.0
SLOPE = 20.0


def build(folder: Path) -> torch.nn.Module:
    """The model FunASR builds from ``folder``."""
    model, _ = AutoModel.build_model(model=str(folder), device="cpu", disable_update=True, ncpu=1)
    return model


def make_energy_detector(model: torch.nn.Module) -> None:
    """Set the FSMN's weights so its silence posterior falls as the frame's energy rises.

    One unit carries ``relu(mean(x) - SPEECH_THRESHOLD)`` through every layer (memory blocks
    pass it unchanged), and the output layer turns it into the silence logit
    ``SILENCE_LOGIT - SLOPE * unit``; the other outputs stay at zero.
    """
    encoder = model.encoder
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.zero_()
        first = encoder.in_linear1.linear
        first.weight[0, :] = 1.0 / first.in_features
        first.bias[0] = -SPEECH_THRESHOLD
        encoder.in_linear2.linear.weight[0, 0] = 1.0
        for block in encoder.fsmn:
            block.linear.linear.weight[0, 0] = 1.0
            block.affine.linear.weight[0, 0] = 1.0
        encoder.out_linear1.linear.weight[0, 0] = 1.0
        encoder.out_linear2.linear.weight[0, 0] = -SLOPE
        encoder.out_linear2.linear.bias[0] = SILENCE_LOGIT


def main(root: Path) -> int:
    """Build, save and check the three models under ``root``."""
    for name in ("asr", "vad", "punc"):
        folder = root / name
        model = build(folder)
        if name == "vad":
            make_energy_detector(model)
        state = model.state_dict()
        torch.save(state, folder / "model.pt")
        reloaded = build(folder).state_dict()
        different = [key for key, value in state.items() if not torch.equal(value, reloaded[key])]
        if different or reloaded.keys() != state.keys():
            print(f"{name}: model.pt does not load back: {different[:5]}", file=sys.stderr)
            return 1
        parameters = sum(value.numel() for value in state.values())
        print(f"{name}: {type(model).__name__}, {parameters} parameters, {folder / 'model.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
