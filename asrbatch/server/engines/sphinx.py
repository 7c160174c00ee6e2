"""PocketSphinx engine: English recognition on the CPU with the model its wheel ships."""

from __future__ import annotations

import logging
import queue
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asrbatch.server.engines.base import EngineResult, EngineSettings, EngineUnavailable, Segment

log = logging.getLogger(__name__)

BUNDLED_MODEL = "en-us"
# PocketSphinx reports 100 frames a second with its default configuration.
FRAMES_PER_SECOND = 100
# Feed the decoder a second of 16 kHz 16-bit audio at a time, so long files stay small in memory.
_ALTERNATE_PRONUNCIATION = re.compile(r"\(\d+\)$")


@dataclass(frozen=True)
class SphinxModel:
    """Where the three parts of a PocketSphinx model live."""

    label: str
    acoustic_model: Path
    language_model: Path
    dictionary: Path


def resolve_model(spec: str | None, bundled_root: Path) -> SphinxModel:
    """Find the acoustic model, language model and dictionary named by ``spec``.

    ``spec`` is ``en-us`` (or None) for the model bundled under ``bundled_root``, or a directory
    laid out like it: one acoustic-model subdirectory (it holds ``mdef``), one ``*.lm.bin`` or
    ``*.lm`` file and one ``*.dict`` file. Raises EngineUnavailable naming what is missing.
    """
    if spec in (None, "", BUNDLED_MODEL):
        directory = bundled_root / BUNDLED_MODEL
        label = BUNDLED_MODEL
    else:
        directory = Path(spec).expanduser()
        label = str(directory)
    if not directory.is_dir():
        raise EngineUnavailable(
            f"sphinx model not found at {directory}: give 'en-us' for the bundled English model "
            "or a directory holding an acoustic model folder, a .lm.bin file and a .dict file"
        )
    acoustic = sorted(p for p in directory.iterdir() if (p / "mdef").is_file())
    language = sorted(
        p for p in directory.iterdir() if p.name.endswith((".lm.bin", ".lm")) and "-phone" not in p.name
    )
    dictionary = sorted(p for p in directory.iterdir() if p.suffix == ".dict")
    missing = [
        what
        for what, found in (
            ("an acoustic model folder (with mdef)", acoustic),
            ("a language model (*.lm.bin or *.lm)", language),
            ("a dictionary (*.dict)", dictionary),
        )
        if not found
    ]
    if missing:
        raise EngineUnavailable(f"sphinx model at {directory} lacks {', '.join(missing)}")
    return SphinxModel(label, acoustic[0], language[0], dictionary[0])


def words_to_segments(words: list[tuple[str, int, int]]) -> tuple[Segment, ...]:
    """Turn PocketSphinx word segments (word, start frame, end frame) into timed words.

    Drops silence and filler tokens (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``...) and the
    ``(2)`` markers of alternate pronunciations.
    """
    segments = []
    for word, start, end in words:
        if word.startswith(("<", "[")) or not word:
            continue
        text = _ALTERNATE_PRONUNCIATION.sub("", word)
        segments.append(Segment(start / FRAMES_PER_SECOND, (end + 1) / FRAMES_PER_SECOND, text))
    return tuple(segments)


class SphinxEngine:
    """PocketSphinx behind the Engine interface. Hotwords are accepted and ignored."""

    name = "sphinx"
    supports_hotwords = False

    def __init__(self, model: SphinxModel, decoder_factory: Any) -> None:
        self.model = model.label
        self.device = "cpu"
        self._paths = model
        self._decoder_factory = decoder_factory
        # A decoder is not safe to share between threads; keep idle ones for reuse.
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle.put(self._new_decoder())

    @classmethod
    def load(cls, settings: EngineSettings) -> SphinxEngine:
        """Load PocketSphinx; raises EngineUnavailable when it cannot run here."""
        if settings.device != "cpu":
            raise EngineUnavailable(f"the sphinx engine runs on the cpu only, not {settings.device!r}")
        try:
            import pocketsphinx
        except ImportError as error:
            raise EngineUnavailable(
                f"pocketsphinx not installed ({error}): pip install 'pocketsphinx>=5'"
            ) from error
        model = resolve_model(settings.model, Path(pocketsphinx.get_model_path()))
        engine = cls(model, pocketsphinx.Decoder)
        log.info("engine=sphinx model=%s loaded", model.label)
        return engine

    def _new_decoder(self) -> Any:
        try:
            return self._decoder_factory(
                hmm=str(self._paths.acoustic_model),
                lm=str(self._paths.language_model),
                dict=str(self._paths.dictionary),
                loglevel="ERROR",
            )
        except (RuntimeError, ValueError) as error:
            raise EngineUnavailable(f"cannot load sphinx model {self._paths.label}: {error}") from error

    def transcribe(self, wav_path: Path, hotwords: list[str], batch_size: int) -> EngineResult:
        """Decode the whole file as one utterance: one sentence segment, and its words timed."""
        try:
            decoder = self._idle.get_nowait()
        except queue.Empty:
            decoder = self._new_decoder()
        with wave.open(str(wav_path), "rb") as audio:
            samples = audio.readframes(audio.getnframes())
        # full_utt: normalise over this file alone. Live mode would carry the previous request's
        # normalisation state into this one and make results depend on what was decoded before.
        decoder.start_utt()
        decoder.process_raw(samples, False, True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        words = [(s.word, s.start_frame, s.end_frame) for s in decoder.seg()]
        # Only a decoder that finished its utterance goes back; one that raised is dropped.
        self._idle.put(decoder)
        text = hypothesis.hypstr if hypothesis is not None else ""
        timed = words_to_segments(words)
        # The file is decoded as one utterance: one sentence, from its first word to its last.
        sentences = (Segment(timed[0].start, timed[-1].end, text.strip()),) if timed else ()
        return EngineResult(text=text.strip(), segments=sentences, words=timed)
