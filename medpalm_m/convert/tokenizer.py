"""A Gemma SentencePiece model rewritten for medpalm_m's special ids.

Gemma's tokenizer already has pad 0, eos 1, bos 2, unk 3, which medpalm_m fixes too; only the
piece names differ ('<eos>', '<bos>'), and id 4 is Gemma's '<mask>', a token its models never
see. The rewrite renames ids 1 and 2 to '</s>' and '<s>' (names only: control pieces never come
out of encoding text) and turns id 4 into our control piece '<img>', the image placeholder.
Every id keeps its meaning otherwise, so the checkpoint's embedding table is used unchanged.

The checkpoint's own image token (PaliGemma's '<image>', Gemma 3's '<image_soft_token>') needs no
id of ours: its embedding is never read, because the image tokens overwrite those slots, so our
preprocessing writes id 4 into image slots and the model config says image_token_id=4. The one
visible difference: the literal text '<mask>' now encodes as plain characters.
"""

from __future__ import annotations

from sentencepiece import sentencepiece_model_pb2

from medpalm_m.data import tokenizer as tok

_GEMMA_SPECIAL = {tok.PAD_ID: "<pad>", tok.EOS_ID: "<eos>", tok.BOS_ID: "<bos>", tok.UNK_ID: "<unk>"}
_RENAMED = {tok.EOS_ID: "</s>", tok.BOS_ID: "<s>", tok.IMAGE_ID: tok.IMAGE_PIECE}


def convert_tokenizer(source: str, destination: str) -> str:
  """Write the rewritten model to `destination`; returns the piece id 4 had before."""
  proto = sentencepiece_model_pb2.ModelProto()
  with open(source, "rb") as f:
    proto.ParseFromString(f.read())
  pieces = proto.pieces
  for i, name in _GEMMA_SPECIAL.items():
    if len(pieces) <= i or pieces[i].piece != name:
      found = pieces[i].piece if len(pieces) > i else "nothing"
      raise ValueError(f"{source}: id {i} is {found!r}, a Gemma tokenizer has {name!r}; "
                       "medpalm_m needs pad 0, eos 1, bos 2, unk 3")
  taken = {p.piece: i for i, p in enumerate(pieces)}
  for i, name in _RENAMED.items():
    if taken.get(name, i) != i:
      raise ValueError(f"{source}: {name!r} is already id {taken[name]}; cannot make it id {i}")
  replaced = pieces[tok.IMAGE_ID].piece
  for i, name in _RENAMED.items():
    pieces[i].piece = name
  pieces[tok.IMAGE_ID].type = sentencepiece_model_pb2.ModelProto.SentencePiece.CONTROL
  proto.trainer_spec.eos_piece, proto.trainer_spec.bos_piece = _RENAMED[tok.EOS_ID], _RENAMED[tok.BOS_ID]
  with open(destination, "wb") as f:
    f.write(proto.SerializeToString())
  tok.Tokenizer(destination)  # checks the ids medpalm_m relies on
  return replaced
