"""The attention trace: every attention weight of one translation, with the pieces it
is about, recorded step by step from the cached decoder and saved for the viewers.

    from minitransformer.trace import AttentionTrace, record_trace
    trace = record_trace(model, tokenizer, tokenizer.encode_src("the black cat sleeps ."))
    trace.save("cat")                  # cat.npz (arrays) + cat.json (pieces, shapes, axes)
    trace = AttentionTrace.load("cat")

The three attention types and their axes (rows are queries, columns are keys; every row
is a probability distribution over its keys, so it sums to 1):

    encoder       (Le, H, S, S)   source piece   attending to   source pieces
    decoder_self  (Ld, H, T, T)   decoding step  attending to   decoder input pieces
    cross         (Ld, H, T, S)   decoding step  attending to   source pieces
    saliency      (T, S)          decoding step  explained by   source pieces (saliency.py)
    explanations  {name: (T, S)}  the same, by rollout and integrated gradients (interpret/)
    head_importance {stack: (L, H)}  |∂ log p(output)/∂g_h| per head, normalized per layer

Step t reads the decoder input piece t (<s>, then the pieces produced so far) and produces
output piece t. So the rows of decoder_self and cross are labelled with output_pieces (what
the step produced), and the columns of decoder_self with decoder_input_pieces
(<s> y_0 … y_{T-2}); above the diagonal lie the future positions, exactly 0.

Greedy traces are recorded from the cached greedy decoder itself (its on_step hook); for
beam search, the best hypothesis is fed back through the same cached step, which computes
the same weights that the beam computed for that prefix.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .arrays import to_numpy
from .checkpoint import atomic_write
from .decode import beam_search, generation_budget, greedy_decode, make_stepper
from .layers.encoder import encoder_attention_probs
from .model import Transformer
from .saliency import source_saliency

FORMAT = "minitransformer-attention-trace"
VERSION = 1

# what the axes of each array mean, saved in the .json so that a reader of the files knows
AXES = {
    "encoder": ["layer", "head", "query: source piece", "key: source piece"],
    "decoder_self": ["layer", "head", "query: decoding step (output piece)", "key: decoder input piece"],
    "cross": ["layer", "head", "query: decoding step (output piece)", "key: source piece"],
    "saliency": ["query: decoding step (output piece)", "source piece"],
    "explanation": ["query: decoding step (output piece)", "source piece"],
    "head_importance": ["layer", "head"],
}


class TraceError(ValueError):
    """A trace file is missing, unreadable or inconsistent; the message names the file."""


@dataclass
class AttentionTrace:
    source_pieces: list  # S pieces read by the encoder
    decoder_input_pieces: list  # T pieces read by the decoder: <s> y_0 … y_{T-2}
    output_pieces: list  # T pieces produced: y_0 … y_{T-1} (</s> last when produced)
    encoder: np.ndarray  # (Le, H, S, S)
    decoder_self: np.ndarray  # (Ld, H, T, T)
    cross: np.ndarray  # (Ld, H, T, S)
    saliency: np.ndarray | None = None  # (T, S)
    source_ids: list = field(default_factory=list)  # (S,)
    output_ids: list = field(default_factory=list)  # (T,)
    source_text: str = ""
    output_text: str = ""
    meta: dict = field(default_factory=dict)  # how it was decoded: decoder, checkpoint, …
    explanations: dict = field(default_factory=dict)  # {name: (T, S)}: rollout, integrated gradients
    head_importance: dict = field(default_factory=dict)  # {stack: (L, H)}

    def __post_init__(self):
        self.check()

    @property
    def n_steps(self):
        return len(self.output_pieces)

    def check(self):
        """Raise TraceError when an array's shape does not fit the pieces."""
        src_len, n_steps = len(self.source_pieces), len(self.output_pieces)
        if len(self.decoder_input_pieces) != n_steps:
            raise TraceError(f"{len(self.decoder_input_pieces)} decoder input pieces for {n_steps} steps")
        expected = {
            "encoder": (src_len, src_len),
            "decoder_self": (n_steps, n_steps),
            "cross": (n_steps, src_len),
        }
        for name, tail in expected.items():
            array = getattr(self, name)
            if array.ndim != 4 or array.shape[2:] != tail:
                raise TraceError(
                    f"{name} has shape {array.shape}; the pieces need (layers, heads, {tail[0]}, {tail[1]})"
                )
        if self.saliency is not None and self.saliency.shape != (n_steps, src_len):
            raise TraceError(f"saliency has shape {self.saliency.shape}; the pieces need ({n_steps}, {src_len})")
        for name, array in self.explanations.items():
            if np.shape(array) != (n_steps, src_len):
                raise TraceError(f"explanation {name!r} has shape {np.shape(array)}; the pieces need ({n_steps}, {src_len})")

    def _repr_html_(self):
        """Inline in Jupyter: the page of viz/html.py inside an <iframe srcdoc>, so that its
        script, style and Content-Security-Policy stay its own and the notebook's stay apart."""
        import html

        from .viz.html import render_html

        page = html.escape(render_html(self), quote=True)
        return (f'<iframe srcdoc="{page}" sandbox="allow-scripts" title="attention trace" '
                'style="width: 100%; height: 640px; border: 0"></iframe>')

    # --- files ---------------------------------------------------------------------------

    @staticmethod
    def paths(path):
        """"out/cat", "out/cat.npz" or "out/cat.json" -> (out/cat.npz, out/cat.json)."""
        path = Path(path)
        if path.suffix in (".npz", ".json"):
            path = path.with_suffix("")
        return path.with_name(path.name + ".npz"), path.with_name(path.name + ".json")

    def save(self, path):
        """Write <path>.npz (the arrays) and <path>.json (pieces, shapes, axes); returns both."""
        npz_path, json_path = self.paths(path)
        npz_path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"encoder": self.encoder, "decoder_self": self.decoder_self, "cross": self.cross}
        if self.saliency is not None:
            arrays["saliency"] = self.saliency
        for name, array in self.explanations.items():
            arrays[f"explanation:{name}"] = array
        for stack, array in self.head_importance.items():
            arrays[f"head_importance:{stack}"] = array
        # each file whole or not at all, like checkpoints (a full disk leaves the old one)
        atomic_write(npz_path, lambda handle: np.savez_compressed(handle, **arrays))
        record = {
            "format": FORMAT,
            "version": VERSION,
            "source_text": self.source_text,
            "output_text": self.output_text,
            "source_pieces": list(self.source_pieces),
            "decoder_input_pieces": list(self.decoder_input_pieces),
            "output_pieces": list(self.output_pieces),
            "source_ids": [int(i) for i in self.source_ids],
            "output_ids": [int(i) for i in self.output_ids],
            "shapes": {name: list(array.shape) for name, array in arrays.items()},
            "axes": {name: AXES.get(name.split(":")[0], []) for name in arrays},
            "meta": self.meta,
        }
        text = json.dumps(record, ensure_ascii=False, indent=1) + "\n"
        atomic_write(json_path, lambda handle: handle.write(text.encode("utf-8")))
        return npz_path, json_path

    @classmethod
    def load(cls, path):
        npz_path, json_path = cls.paths(path)
        for required in (npz_path, json_path):
            if not required.is_file():
                raise TraceError(f"{required}: trace file not found")
        try:
            record = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise TraceError(f"{json_path}: unreadable trace record ({error})") from None
        if record.get("format") != FORMAT:
            raise TraceError(f"{json_path}: not an attention trace (format {record.get('format')!r})")
        try:
            with np.load(npz_path) as arrays:
                loaded = {name: arrays[name] for name in arrays.files}
        except (OSError, ValueError) as error:
            raise TraceError(f"{npz_path}: unreadable trace arrays ({error})") from None
        for name, shape in record["shapes"].items():
            if name not in loaded or list(loaded[name].shape) != shape:
                raise TraceError(f"{npz_path}: {name} does not have the shape {shape} that {json_path.name} records")
        try:
            return cls(
                source_pieces=record["source_pieces"],
                decoder_input_pieces=record["decoder_input_pieces"],
                output_pieces=record["output_pieces"],
                encoder=loaded["encoder"],
                decoder_self=loaded["decoder_self"],
                cross=loaded["cross"],
                saliency=loaded.get("saliency"),
                explanations={k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("explanation:")},
                head_importance={k.split(":", 1)[1]: v for k, v in loaded.items() if k.startswith("head_importance:")},
                source_ids=record.get("source_ids", []),
                output_ids=record.get("output_ids", []),
                source_text=record.get("source_text", ""),
                output_text=record.get("output_text", ""),
                meta=record.get("meta", {}),
            )
        except KeyError as error:
            raise TraceError(f"{json_path}: missing {error}") from None


# --- recording -------------------------------------------------------------------------------


def _record_steps(model, src, bos_id, eos_id, max_len, beam_size, length_penalty, use_cache):
    """-> produced ids (</s> included when produced), decoder_self (Ld, H, T, T), cross (Ld, H, T, S)."""
    config = model.config
    src_len = src.shape[1]
    rows = {"self": [], "cross": []}  # per step: [layer] (H, t+1) and (H, S)
    produced = []

    def keep(attention):
        rows["self"].append([to_numpy(weights[0]) for weights in attention["self"]])
        rows["cross"].append([to_numpy(weights[0]) for weights in attention["cross"]])

    if beam_size == 1:
        # the greedy decoder reports each step's weights as it goes

        def on_step(step, sentences, next_ids, attention):
            keep(attention)
            produced.append(int(next_ids[0]))

        greedy_decode(model, src, bos_id, eos_id, max_len, use_cache, on_step=on_step)
    else:
        # the best hypothesis, fed back through the same decoding step
        best = beam_search(model, src, bos_id, eos_id, max_len, beam_size, length_penalty, use_cache)[0]
        produced = best + ([eos_id] if len(best) < min(max_len, config.max_len) else [])
        memory, src_mask, _ = model.encode(src)
        stepper = make_stepper(model, memory, src_mask, 1, use_cache)
        for token_in in [bos_id] + produced[:-1]:
            _, attention = stepper.step(model.xp.asarray([token_in], dtype=np.int64))
            keep(attention)
    n_steps = len(produced)
    # layers as the steps reported them: a recurrent decoder (rnn/) has no self-attention
    n_self = len(rows["self"][0]) if rows["self"] else config.n_decoder_layers
    n_cross = len(rows["cross"][0]) if rows["cross"] else config.n_decoder_layers
    decoder_self = np.zeros((n_self, config.n_heads, n_steps, n_steps))  # (Ld, H, T, T)
    cross = np.zeros((n_cross, config.n_heads, n_steps, src_len))  # (Ld, H, T, S)
    for step in range(n_steps):
        for layer in range(n_self):
            decoder_self[layer, :, step, : step + 1] = rows["self"][step][layer]  # (H, t+1)
        for layer in range(n_cross):
            cross[layer, :, step] = rows["cross"][step][layer]  # (H, S)
    return produced, decoder_self, cross


def record_trace(
    model,
    tokenizer,
    src_ids,
    max_len=None,
    beam_size=1,
    length_penalty=0.6,
    use_cache=True,
    with_saliency=True,
    meta=None,
    with_explanations=False,
):
    """Translate one sentence and keep every attention weight.

    tokenizer: anything with bos_id, eos_id, src_pieces(ids), tgt_pieces(ids) and
    decode_tgt(ids) (minitransformer.tokenizer.Tokenizer). src_ids: the source ids (S,).
    max_len defaults to 2·S + 10, clipped to the model's positions. with_explanations: also
    keep rollout, integrated gradients and this sentence's head importance (interpret/).
    """
    src_ids = [int(i) for i in src_ids]
    bos_id, eos_id = tokenizer.bos_id, tokenizer.eos_id
    src = model.xp.asarray(np.array([src_ids], dtype=np.int64))  # (1, S)
    max_len = generation_budget(len(src_ids), model.config.max_len, max_len)
    produced, decoder_self, cross = _record_steps(
        model, src, bos_id, eos_id, max_len, beam_size, length_penalty, use_cache
    )
    if hasattr(model, "encoder_attention"):  # a recurrent encoder: no attention, (0, 1, S, S)
        encoder = model.encoder_attention(src)
    else:
        _, _, cache_encode = model.encode(src)
        encoder = np.stack([to_numpy(probs[0]) for probs in encoder_attention_probs(cache_encode.encoder)])  # (Le, H, S, S)
    saliency = source_saliency(model, src_ids, produced, bos_id) if with_saliency else None  # (T, S)
    explanations, head_importance = {}, {}
    # the explanations read the Transformer's head gates and attention gradients
    # (interpret/gates.py); a recurrent model's trace goes without them
    if with_explanations and produced and isinstance(model, Transformer):
        from .interpret.methods import piece_views

        explanations, head_importance = piece_views(model, src_ids, produced, bos_id)
    words = [token for token in produced if token != eos_id]
    meta = dict(meta or {})
    meta.setdefault("decoder", "greedy" if beam_size == 1 else f"beam search, K={beam_size}, α={length_penalty}")
    meta["ended_with_eos"] = bool(produced and produced[-1] == eos_id)
    return AttentionTrace(
        source_pieces=list(tokenizer.src_pieces(src_ids)),
        decoder_input_pieces=list(tokenizer.tgt_pieces([bos_id] + produced[:-1])) if produced else [],
        output_pieces=list(tokenizer.tgt_pieces(produced)),
        encoder=encoder.astype(np.float64),
        decoder_self=decoder_self,
        cross=cross,
        saliency=saliency,
        source_ids=src_ids,
        output_ids=produced,
        source_text=tokenizer.decode_src(src_ids) if hasattr(tokenizer, "decode_src") else "",
        output_text=tokenizer.decode_tgt(words),
        meta=meta,
        explanations=explanations,
        head_importance=head_importance,
    )
