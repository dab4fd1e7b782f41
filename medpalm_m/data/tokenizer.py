"""SentencePiece tokenizer with the special ids the model relies on, and `<img>` handling.

Ids are fixed: pad 0, eos 1, bos 2, unk 3, `<img>` 4. `<img>` is a SentencePiece *control*
symbol, so encoding text never produces it: the only way to get an image slot is the prompt's
image marker, which `encode_prompt` turns into the id directly. The text of a one-shot exemplar
that merely mentions "<img>" therefore stays plain text, as in the paper.
"""

from __future__ import annotations

import io
import os
from typing import Iterable

import sentencepiece as spm

PAD_ID, EOS_ID, BOS_ID, UNK_ID, IMAGE_ID = 0, 1, 2, 3, 4
IMAGE_PIECE = "<img>"

# In a prompt string, `<img>` marks an image slot; `\<img>` is the literal text "<img>" (used by
# one-shot exemplars whose image the paper replaces by that text).
IMAGE_MARKER = "<img>"
ESCAPED_IMAGE_MARKER = "\\<img>"


def escape_image_markers(text: str) -> str:
  """Make every `<img>` in `text` literal text, never an image slot."""
  return text.replace(IMAGE_MARKER, ESCAPED_IMAGE_MARKER)


def split_on_image_markers(prompt: str) -> list[str]:
  """Split a prompt at its image markers; escaped markers become literal "<img>" text.

  Returns the text segments: len(segments) - 1 is the number of image slots.
  """
  sentinel = "\x00"
  parts = prompt.replace(ESCAPED_IMAGE_MARKER, sentinel).split(IMAGE_MARKER)
  return [p.replace(sentinel, IMAGE_MARKER) for p in parts]


def count_image_markers(prompt: str) -> int:
  return len(split_on_image_markers(prompt)) - 1


class Tokenizer:

  def __init__(self, model_path: str | os.PathLike | None = None, *, model_proto: bytes | None = None):
    if (model_path is None) == (model_proto is None):
      raise ValueError("give exactly one of model_path or model_proto")
    if model_path is not None:
      if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"SentencePiece model {model_path} not found; set config.data.tokenizer to the "
            "tokenizer of your checkpoint, or build the synthetic benchmark, which trains one")
      with open(model_path, "rb") as f:
        model_proto = f.read()
    self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
    expected = {PAD_ID: "<pad>", EOS_ID: "</s>", BOS_ID: "<s>", IMAGE_ID: IMAGE_PIECE}
    for i, piece in expected.items():
      if self.sp.id_to_piece(i) != piece:
        raise ValueError(f"tokenizer {model_path or '<proto>'}: id {i} is {self.sp.id_to_piece(i)!r}, "
                         f"medpalm_m expects {piece!r} (pad 0, eos 1, bos 2, unk 3, <img> 4)")

  @property
  def vocab_size(self) -> int:
    return self.sp.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self.sp.encode(text)

  def decode(self, ids: Iterable[int]) -> str:
    ids = [int(i) for i in ids]
    if EOS_ID in ids:
      ids = ids[: ids.index(EOS_ID)]
    # A model's embedding table may be larger than its tokenizer (Gemma 3: 262,208 rows for
    # 262,144 pieces): an id past the tokenizer is shown as `<unk:ID>` between the decoded runs.
    text, run = [], []
    for i in ids:
      if i in (PAD_ID, BOS_ID, IMAGE_ID):
        continue
      if i < self.vocab_size:
        run.append(i)
        continue
      text.append(self.sp.decode(run) + unknown_piece(i))
      run = []
    return "".join(text) + self.sp.decode(run)

  def piece(self, token_id: int) -> str:
    """The piece of one id, `<unk:ID>` past the tokenizer."""
    return self.sp.id_to_piece(token_id) if token_id < self.vocab_size else unknown_piece(token_id)

  def encode_prompt(self, prompt: str, image_slots: int, *, image_open: str = "",
                    image_close: str = "", end: str = "") -> tuple[list[int], int]:
    """Token ids of a prompt with each image marker expanded into `image_slots` image ids, the
    text `image_open` before and `image_close` after each, and `end` after the prompt; each text
    run between images is encoded whole, as a checkpoint's own processor encodes it.

    Returns (ids, number of images referenced).
    """
    segments = split_on_image_markers(prompt)
    texts = [(image_close if i else "") + segment + (image_open if i < len(segments) - 1 else end)
             for i, segment in enumerate(segments)]
    ids: list[int] = []
    for i, text in enumerate(texts):
      if i:
        ids.extend([IMAGE_ID] * image_slots)
      if text:
        ids.extend(self.sp.encode(text))
    return ids, len(segments) - 1


def unknown_piece(token_id: int) -> str:
  """How an id the tokenizer does not have is shown."""
  return f"<unk:{token_id}>"


def train_tokenizer(sentences: Iterable[str], vocab_size: int, output_path: str | os.PathLike) -> Tokenizer:
  """Train a deterministic SentencePiece BPE model with medpalm_m's special ids.

  BPE rather than unigram: on a small corpus with few distinct words the unigram trainer stops
  far below the requested size and splits common words into letters; BPE reaches whole words.
  """
  proto = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=proto, vocab_size=vocab_size,
      model_type="bpe", character_coverage=1.0, pad_id=PAD_ID, eos_id=EOS_ID, bos_id=BOS_ID,
      unk_id=UNK_ID, control_symbols=[IMAGE_PIECE], byte_fallback=True, split_digits=True,
      num_threads=1,  # one thread keeps the trained model byte-identical from run to run
      minloglevel=2)
  with open(output_path, "wb") as f:
    f.write(proto.getvalue())
  return Tokenizer(output_path)
