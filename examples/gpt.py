"""A character-level GPT in scalar Values, in the style of Karpathy's microgpt (2026): token and
position embeddings, RMSNorm, multi-head causal self-attention with a KV cache, a ReLU MLP,
cross-entropy, Adam with a linearly decaying learning rate, one name per step, then sampling.
n_embd 16, 4 heads, block_size 16, one layer: 4160 parameters (a vocabulary of 26).

The same model code runs on three engines (--engine):
  python     the pure-Python Value below, microgpt's own (`Value(data, children, local_grads)`)
  arenagrad  the same code with `from arenagrad import Value` and nothing else changed
  idiomatic  arenagrad with its n-ary nodes (`arenagrad.linear`, `arenagrad.sum`,
             `arenagrad.max`) and `arenagrad.optim.Adam`
and, with --compiled --batch B, arenagrad.compile traces one step's loss for each length of
name and replays it over B names of that length at once (token ids are lane inputs, looked up
with `arenagrad.take`).

Run: python examples/gpt.py [--engine python|arenagrad|idiomatic] [--steps 60] [--samples 10]
     python examples/gpt.py --compiled --batch 16 --steps 50
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

N_EMBD = 16
N_HEAD = 4
N_LAYER = 1
BLOCK_SIZE = 16
HEAD_DIM = N_EMBD // N_HEAD


# ---------------------------------------------------------------------------------------------
# The pure-Python engine: microgpt's Value, each node with its children and its local gradients.


class Value:
    __slots__ = ("_children", "_local_grads", "data", "grad")

    def __init__(
        self, data: float, children: tuple[Any, ...] = (), local_grads: tuple[Any, ...] = ()
    ):
        self.data = data
        self.grad = 0.0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other: Any) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other: Any) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other: float) -> Value:
        return Value(self.data**other, (self,), (other * self.data ** (other - 1),))

    def log(self) -> Value:
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def exp(self) -> Value:
        return Value(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self) -> Value:
        return Value(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self) -> Value:
        return self * -1

    def __radd__(self, other: Any) -> Value:
        return self.__add__(other)

    def __sub__(self, other: Any) -> Value:
        return self.__add__(-other)

    def __rsub__(self, other: Any) -> Value:
        return (-self).__add__(other)

    def __rmul__(self, other: Any) -> Value:
        return self.__mul__(other)

    def __truediv__(self, other: Any) -> Value:
        return self.__mul__(other**-1)

    def __rtruediv__(self, other: Any) -> Value:
        return (self**-1).__mul__(other)

    def backward(self) -> None:
        topo: list[Value] = []
        visited: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:  # microgpt's recursive build_topo, without the recursion limit
            v, expanded = stack.pop()
            if expanded:
                topo.append(v)
            elif id(v) not in visited:
                visited.add(id(v))
                stack.append((v, True))
                stack.extend((child, False) for child in v._children)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


# ---------------------------------------------------------------------------------------------
# The data: names made of syllables (generated, so nothing is downloaded).


def make_names(count: int = 2000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    onsets = ["", "b", "br", "c", "ch", "d", "el", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r",
              "s", "sh", "t", "th", "v", "w", "z"]  # fmt: skip
    vowels = ["a", "e", "i", "o", "u", "y", "ae", "ia", "ie", "ou"]
    codas = ["", "", "", "n", "l", "r", "s", "th", "x", "nd", "lle", "ne", "ra"]
    names = []
    for _ in range(count):
        syllables = rng.choice([1, 2, 2, 2, 3, 3])
        name = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables))
        names.append((name + rng.choice(codas))[: BLOCK_SIZE - 1])
    return names


# ---------------------------------------------------------------------------------------------
# The engines: what differs between them, in one namespace each.


def python_linear(x: Sequence[Any], w: Sequence[Sequence[Any]]) -> list[Any]:
    return [sum(wi * xi for wi, xi in zip(wo, x)) for wo in w]


def python_dot(a: Sequence[Any], b: Sequence[Any]) -> Any:
    return sum(ai * bi for ai, bi in zip(a, b))


def make_engine(name: str) -> SimpleNamespace:
    """Value, linear(x, w), dot(a, b), total(values), shift(logits) (the max subtracted in
    softmax) and embed(table, token_id) for one engine."""
    if name == "python":
        return SimpleNamespace(
            name=name,
            Value=Value,
            linear=python_linear,
            dot=python_dot,
            total=sum,
            shift=lambda logits: max(val.data for val in logits),
            embed=lambda table, token_id: table[token_id],
        )
    import arenagrad

    if name == "arenagrad":  # the same code, only the Value swapped
        return SimpleNamespace(
            name=name,
            Value=arenagrad.Value,
            linear=python_linear,
            dot=python_dot,
            total=sum,
            shift=lambda logits: max(val.data for val in logits),
            embed=lambda table, token_id: table[token_id],
        )
    if name == "idiomatic":  # n-ary nodes: one node per dot product, per sum, per max
        return SimpleNamespace(
            name=name,
            Value=arenagrad.Value,
            linear=lambda x, w: [arenagrad.linear(0.0, wo, x) for wo in w],
            dot=lambda a, b: arenagrad.linear(0.0, a, b),
            total=arenagrad.sum,
            # softmax's shift: a node (per lane when traced) through which no gradient flows
            shift=lambda logits: arenagrad.max(logits).detach(),
            embed=lambda table, token_id: table[token_id],
        )
    raise ValueError(f"unknown engine {name!r} (python, arenagrad or idiomatic)")


def make_compiled_engine() -> SimpleNamespace:
    """The idiomatic engine, with token ids as Values: an embedding row is looked up with one
    take() per column and a target's probability with take(), so a trace serves every lane."""
    import arenagrad

    engine = make_engine("idiomatic")
    columns: dict[int, list[list[Any]]] = {}

    def embed(table: list[list[Any]], token_id: Any) -> list[Any]:
        if isinstance(token_id, int):
            return table[token_id]
        if id(table) not in columns:
            columns[id(table)] = [list(column) for column in zip(*table)]
        return [arenagrad.take(column, token_id) for column in columns[id(table)]]

    engine.name = "compiled"
    engine.embed = embed
    engine.take = arenagrad.take
    return engine


# ---------------------------------------------------------------------------------------------
# The model, written once for every engine.


def init_params(
    engine: SimpleNamespace, vocab_size: int, seed: int = 42
) -> dict[str, list[list[Any]]]:
    rng = random.Random(seed)

    def matrix(nout: int, nin: int, std: float = 0.08) -> list[list[Any]]:
        return [[engine.Value(rng.gauss(0, std)) for _ in range(nin)] for _ in range(nout)]

    state_dict = {
        "wte": matrix(vocab_size, N_EMBD),
        "wpe": matrix(BLOCK_SIZE, N_EMBD),
        "lm_head": matrix(vocab_size, N_EMBD),
    }
    for i in range(N_LAYER):
        state_dict[f"layer{i}.attn_wq"] = matrix(N_EMBD, N_EMBD)
        state_dict[f"layer{i}.attn_wk"] = matrix(N_EMBD, N_EMBD)
        state_dict[f"layer{i}.attn_wv"] = matrix(N_EMBD, N_EMBD)
        state_dict[f"layer{i}.attn_wo"] = matrix(N_EMBD, N_EMBD)
        state_dict[f"layer{i}.mlp_fc1"] = matrix(4 * N_EMBD, N_EMBD)
        state_dict[f"layer{i}.mlp_fc2"] = matrix(N_EMBD, 4 * N_EMBD)
    return state_dict


def softmax(engine: SimpleNamespace, logits: Sequence[Any]) -> list[Any]:
    max_val = engine.shift(logits)
    exps = [(val - max_val).exp() for val in logits]
    total = engine.total(exps)
    return [e / total for e in exps]


def rmsnorm(engine: SimpleNamespace, x: Sequence[Any]) -> list[Any]:
    ms = engine.dot(x, x) / len(x)
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]


def gpt(
    engine: SimpleNamespace,
    sd: dict[str, list[list[Any]]],
    token_id: Any,
    pos_id: int,
    keys: list[list[Any]],
    values: list[list[Any]],
) -> list[Any]:
    tok_emb = engine.embed(sd["wte"], token_id)
    pos_emb = sd["wpe"][pos_id]
    x = [t + p for t, p in zip(tok_emb, pos_emb)]
    x = rmsnorm(engine, x)
    for li in range(N_LAYER):
        x_residual = x
        x = rmsnorm(engine, x)
        q = engine.linear(x, sd[f"layer{li}.attn_wq"])
        k = engine.linear(x, sd[f"layer{li}.attn_wk"])
        v = engine.linear(x, sd[f"layer{li}.attn_wv"])
        keys[li].append(k)
        values[li].append(v)
        x_attn = []
        for h in range(N_HEAD):
            hs = h * HEAD_DIM
            q_h = q[hs : hs + HEAD_DIM]
            k_h = [ki[hs : hs + HEAD_DIM] for ki in keys[li]]
            v_h = [vi[hs : hs + HEAD_DIM] for vi in values[li]]
            attn_logits = [engine.dot(q_h, k_h[t]) / HEAD_DIM**0.5 for t in range(len(k_h))]
            attn_weights = softmax(engine, attn_logits)
            head_out = [
                engine.dot(attn_weights, [v_h[t][j] for t in range(len(v_h))])
                for j in range(HEAD_DIM)
            ]
            x_attn.extend(head_out)
        x = engine.linear(x_attn, sd[f"layer{li}.attn_wo"])
        x = [a + b for a, b in zip(x, x_residual)]
        x_residual = x
        x = rmsnorm(engine, x)
        x = engine.linear(x, sd[f"layer{li}.mlp_fc1"])
        x = [xi.relu() for xi in x]
        x = engine.linear(x, sd[f"layer{li}.mlp_fc2"])
        x = [a + b for a, b in zip(x, x_residual)]
    logits: list[Any] = engine.linear(x, sd["lm_head"])
    return logits


def document_loss(
    engine: SimpleNamespace, sd: dict[str, list[list[Any]]], tokens: Sequence[Any]
) -> Any:
    """The mean cross-entropy of predicting tokens[1:] from the tokens before each."""
    n = len(tokens) - 1
    keys: list[list[Any]] = [[] for _ in range(N_LAYER)]
    values: list[list[Any]] = [[] for _ in range(N_LAYER)]
    losses = []
    for pos_id in range(n):
        logits = gpt(engine, sd, tokens[pos_id], pos_id, keys, values)
        probs = softmax(engine, logits)
        target = tokens[pos_id + 1]
        picked = probs[target] if isinstance(target, int) else engine.take(probs, target)
        losses.append(-picked.log())
    return (1 / n) * engine.total(losses)


# ---------------------------------------------------------------------------------------------
# Training and sampling.


class Tokenizer:
    def __init__(self, docs: Sequence[str]) -> None:
        self.chars = sorted(set("".join(docs)))
        self.bos = len(self.chars)  # one token both begins and ends a name
        self.vocab_size = len(self.chars) + 1
        self._ids = {ch: i for i, ch in enumerate(self.chars)}

    def encode(self, doc: str) -> list[int]:
        return [self.bos] + [self._ids[ch] for ch in doc] + [self.bos]


LEARNING_RATE, BETA1, BETA2, EPS = 0.01, 0.85, 0.99, 1e-8


class PythonAdam:
    """Adam written out as a microgpt user writes it (torch.optim.Adam's formula)."""

    def __init__(self, params: list[Any]) -> None:
        self.params = params
        self.m = [0.0] * len(params)
        self.v = [0.0] * len(params)
        self.t = 0

    def step(self, lr: float) -> None:
        self.t += 1
        t = self.t
        for i, p in enumerate(self.params):
            g = p.grad
            self.m[i] = BETA1 * self.m[i] + (1 - BETA1) * g
            self.v[i] = BETA2 * self.v[i] + (1 - BETA2) * g * g
            p.data -= (
                lr
                / (1 - BETA1**t)
                * self.m[i]
                / (math.sqrt(self.v[i]) / math.sqrt(1 - BETA2**t) + EPS)
            )
            p.grad = 0.0


class NativeAdam:
    """arenagrad.optim.Adam: the same formula over numpy vectors."""

    def __init__(self, params: list[Any]) -> None:
        from arenagrad import optim

        self.opt = optim.Adam(params, lr=LEARNING_RATE, betas=(BETA1, BETA2), eps=EPS)

    def step(self, lr: float) -> None:
        self.opt.lr = lr
        self.opt.step()
        self.opt.zero_grad()


def train(
    engine_name: str,
    steps: int,
    docs: Sequence[str] | None = None,
    seed: int = 42,
    log: Callable[[str], None] | None = None,
) -> tuple[list[float], SimpleNamespace]:
    """Trains for `steps` steps, one name per step; returns the losses and the model."""
    engine = make_engine(engine_name)
    docs = make_names() if docs is None else docs
    tokenizer = Tokenizer(make_names())
    sd = init_params(engine, tokenizer.vocab_size, seed)
    params = [p for mat in sd.values() for row in mat for p in row]
    opt = NativeAdam(params) if engine_name == "idiomatic" else PythonAdam(params)
    losses = []
    for step in range(steps):
        tokens = tokenizer.encode(docs[step % len(docs)])[: BLOCK_SIZE + 1]
        loss = document_loss(engine, sd, tokens)
        loss.backward()
        opt.step(LEARNING_RATE * (1 - step / steps))
        losses.append(loss.data)
        if log is not None:
            log(f"step {step + 1:4d} / {steps:4d} | loss {loss.data:.4f}")
    model = SimpleNamespace(engine=engine, sd=sd, params=params, tokenizer=tokenizer)
    return losses, model


def batches_by_length(tokenizer: Tokenizer, docs: Sequence[str]) -> dict[int, list[list[int]]]:
    """The encoded names, grouped by length (a trace per length)."""
    groups: dict[int, list[list[int]]] = {}
    for doc in docs:
        tokens = tokenizer.encode(doc)[: BLOCK_SIZE + 1]
        groups.setdefault(len(tokens), []).append(tokens)
    return groups


def train_compiled(
    steps: int,
    batch: int,
    docs: Sequence[str] | None = None,
    seed: int = 42,
    log: Callable[[str], None] | None = None,
) -> tuple[list[float], SimpleNamespace, int]:
    """Trains with arenagrad.compile: each step, `batch` names of one length are the lanes of
    one replay of that length's trace, and the loss is their mean. Returns the mean losses,
    the model and the number of tokens trained on."""
    import arenagrad
    import numpy as np

    engine = make_compiled_engine()
    docs = make_names() if docs is None else docs
    tokenizer = Tokenizer(make_names())
    sd = init_params(engine, tokenizer.vocab_size, seed)
    params = [p for mat in sd.values() for row in mat for p in row]
    opt = NativeAdam(params)
    loss_of = arenagrad.compile(lambda *tokens: document_loss(engine, sd, tokens), n_inputs=None)
    groups = batches_by_length(tokenizer, docs)
    lengths = sorted(groups)
    weights = [len(groups[n]) for n in lengths]
    rng = random.Random(seed)
    next_doc = dict.fromkeys(lengths, 0)
    losses, tokens_seen = [], 0
    for step in range(steps):
        n = rng.choices(lengths, weights)[0]
        group = groups[n]
        rows = [group[(next_doc[n] + b) % len(group)] for b in range(batch)]
        next_doc[n] = (next_doc[n] + batch) % len(group)
        lane_losses = loss_of.forward(np.array(rows, dtype=np.float64))
        loss_of.backward(np.full(batch, 1.0 / batch))  # the mean over the lanes
        opt.step(LEARNING_RATE * (1 - step / steps))
        losses.append(float(lane_losses.mean()))
        tokens_seen += batch * (n - 1)
        if log is not None:
            log(f"step {step + 1:4d} / {steps:4d} | length {n:2d} | loss {losses[-1]:.4f}")
    eager = SimpleNamespace(
        engine=make_engine("idiomatic"), sd=sd, params=params, tokenizer=tokenizer
    )
    return losses, eager, tokens_seen


def sample(
    model: SimpleNamespace, count: int, temperature: float = 0.5, seed: int = 0
) -> list[str]:
    rng = random.Random(seed)
    engine, tokenizer = model.engine, model.tokenizer
    names = []
    for _ in range(count):
        keys: list[list[Any]] = [[] for _ in range(N_LAYER)]
        values: list[list[Any]] = [[] for _ in range(N_LAYER)]
        token_id, chars = tokenizer.bos, []
        for pos_id in range(BLOCK_SIZE):
            logits = gpt(engine, model.sd, token_id, pos_id, keys, values)
            probs = softmax(engine, [val / temperature for val in logits])
            token_id = rng.choices(range(tokenizer.vocab_size), weights=[p.data for p in probs])[0]
            if token_id == tokenizer.bos:
                break
            chars.append(tokenizer.chars[token_id])
        names.append("".join(chars))
    return names


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--engine", default="arenagrad", choices=["python", "arenagrad", "idiomatic"]
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--compiled", action="store_true", help="train with arenagrad.compile")
    parser.add_argument("--batch", type=int, default=16, help="names per step with --compiled")
    args = parser.parse_args()
    if args.compiled:
        start = time.perf_counter()
        losses, model, tokens = train_compiled(args.steps, args.batch, log=print)
        elapsed = time.perf_counter() - start
        print(
            f"compiled, batch {args.batch}: {1000 * elapsed / args.steps:.1f} ms per step, "
            f"{tokens / elapsed:.0f} tokens per second, final loss {losses[-1]:.4f}"
        )
        print("samples:", ", ".join(sample(model, args.samples)))
        return

    start = time.perf_counter()
    losses, model = train(args.engine, args.steps, log=print)
    elapsed = time.perf_counter() - start
    print(
        f"{args.engine}: {1000 * elapsed / args.steps:.1f} ms per step, final loss {losses[-1]:.4f}"
    )
    print("samples:", ", ".join(sample(model, args.samples)))


if __name__ == "__main__":
    main()
