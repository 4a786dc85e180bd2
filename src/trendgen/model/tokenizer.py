"""A real CLIP BPE tokenizer learnt from captions, for models built without a pretrained tokenizer.

Both the random-weight CLIP (`model.pretrained=false`) and the tiny diffusion generator use it, so neither
needs the network. It is a `transformers.CLIPTokenizer` with CLIP's normaliser, pre-tokeniser and special
tokens, only with a small vocabulary trained on the given text; it saves and reloads with `save_pretrained`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import CLIPTokenizer

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
_CLIP_SPLIT = (  # CLIP's own pre-tokeniser pattern
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def train_caption_tokenizer(
    texts: Iterable[str], vocab_size: int = 4096, model_max_length: int = 77
) -> CLIPTokenizer:
    """Train CLIP-style byte-level BPE on `texts`; every byte stays in the vocabulary, so nothing is unknown.

    Token ids: 0 is BOS, 1 is EOS (also the pad token, as in CLIP). `vocab_size` counts what BPE learns
    (specials, bytes, merges); the 256 word-final byte tokens come on top. Whole caption words become single
    tokens as long as `vocab_size` allows. The same texts always give the same tokenizer.
    """
    backend = Tokenizer(BPE(unk_token=EOS, end_of_word_suffix="</w>", continuing_subword_prefix=""))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # Every byte can also end a word, so any text tokenises without an unknown token. Registering these
    # word-final tokens up front also makes training deterministic: the trainer would otherwise create them
    # in hash-map order, and their ids break ties between equally frequent merges (tokenizers issue 1794).
    word_ends = [char + "</w>" for char in sorted(alphabet)]
    trainer = BpeTrainer(
        vocab_size=vocab_size + len(word_ends),  # the word-final tokens come on top, as they always have
        min_frequency=1,
        special_tokens=[BOS, EOS, *word_ends],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=EOS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        model_max_length=model_max_length,
    )
