"""A checkpoint's chat template around one user turn: what `generate --chat` asks an instruction-
tuned model (MedGemma-4B-it: `<start_of_turn>user\\n ... <end_of_turn>\\n<start_of_turn>model\\n`).

The template is the checkpoint's own Jinja file (`convert import` copies it), rendered as
transformers renders it, in a sandbox. The user's prompt is the message content, as a string:
its `<img>` markers pass through the template unchanged, and the prompt layout then wraps each
image as the checkpoint's processor does. [BOS] is the layout's too, so the template's
`{{ bos_token }}` renders empty.
"""

from __future__ import annotations

import os

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _raise(message: str) -> None:
  raise ValueError(f"the chat template refuses the conversation: {message}")


def user_turn(template_path: str, prompt: str) -> str:
  """`prompt` as the model's one user turn, followed by the opening of its answer."""
  if not template_path:
    raise ValueError("--chat needs the checkpoint's chat template, and config.data.chat_template is "
                     "empty: import an instruction-tuned checkpoint whose folder has "
                     "chat_template.jinja (or a chat_template in tokenizer_config.json)")
  path = os.path.expanduser(template_path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"config.data.chat_template: {path} not found")
  with open(path) as f:
    source = f.read()
  environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
  try:
    template = environment.from_string(source)
  except jinja2.TemplateSyntaxError as e:
    raise ValueError(f"{path}: not a Jinja template: {e}") from None
  return template.render(messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
                         bos_token="", eos_token="", raise_exception=_raise)
