"""What a user may ask of a model, and every rule about it, written once.

A request is described without any web framework: `Field`s say each value's type, range and
meaning; builders (`generate_request`, `interpolate_request`, `score_request`) check the
values and the rules between them and return a frozen request. The HTTP layer, the command
line and the engine all go through these builders, and the OpenAPI document is made from the
same fields, so a rule and its message exist once. A message names the field as the caller
spells it (`spell`: "keep_top" over HTTP, "--keep-top" on the command line), the value
received and what is allowed.

    >>> request = generate_request(card, seed=3, n=2, keep_top=0.25)
    >>> request.seeds, request.mode
    ([3, 4], BestOf(candidates=4))
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import NoDiscriminator, NoEncoder, NoTrainIndex, ServingError

MAX_SEED = 2**63 - 1
MIN_TRUNCATION, MAX_TRUNCATION = 0.1, 10.0
MAX_CANDIDATES = 64  # most candidates per image (best-of-K and rejection sampling)
MAX_FRAMES = 64
# Defaults written once: the fields below, the request functions, the dataclasses and the
# command line's flags (serving/cli/commands.py) all take them from here.
DEFAULT_DRS_MAX_CANDIDATES = 16
DEFAULT_FRAMES = 8
DEFAULT_FRAME_MS = 100
GENERATE_FORMATS = ("png", "zip", "json", "npy")
PROJECT_FORMATS = ("json", "npy", "png")
MAX_PROJECT_ROUNDS, DEFAULT_PROJECT_ROUNDS = 64, 8
MAX_PROJECT_CANDIDATES, DEFAULT_PROJECT_CANDIDATES = 256, 32
MAX_PROJECT_RUNS = 4096  # rounds x candidates: G's runs per projected image
INTERPOLATE_FORMATS = ("png", "gif")
RANDOM_SEEDS = 2**31  # a request without a seed gets one below this

Spell = Callable[[str], str]


def _same(name: str) -> str:
    return name


def show(value) -> str:
    """A value as a message quotes it: JSON's spelling (strings quoted, NaN as NaN), cut short."""
    try:
        return json.dumps(value)[:80]
    except (TypeError, ValueError):
        return repr(value)[:80]


# --- fields ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """One value of a request: its type, range and meaning. `allowed` ends every message about
    the field ("... is not allowed; <allowed>"); `{maximum}` in it is filled in per check."""

    name: str
    kind: str  # integer | number | boolean | string | file | latent (a list of numbers: one latent vector)
    description: str
    allowed: str = ""
    default: object = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    array: bool = False  # a list of such values
    max_items: int | None = None
    example: object = None

    def check(self, value, name: str | None = None, maximum: float | None = None):
        """`value` in its canonical type (int, float, bool, str; a list for arrays), or
        ServingError naming `name` (default: the field's own name)."""
        name = name or self.name
        if not self.array:
            return self._check_one(value, name, maximum)
        if not isinstance(value, (list, tuple)):
            raise ServingError(f"{name}: {show(value)} is not allowed; give a list")
        if not value:
            raise ServingError(f"{name}: the list is empty; give at least one value or leave {name} out")
        if self.max_items is not None and len(value) > self.max_items:
            raise ServingError(f"{name}: {len(value)} values is more than the limit of {self.max_items}")
        return [self._check_one(item, f"{name}[{i}]", maximum) for i, item in enumerate(value)]

    def _check_one(self, value, name: str, maximum: float | None):
        high = self.maximum if maximum is None else maximum
        if self.kind == "integer":
            ok = _is_integer(value) and (self.minimum is None or value >= self.minimum) and (
                high is None or value <= high)
            value = int(value) if ok else value
        elif self.kind == "number":
            ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
                  and math.isfinite(value) and (self.minimum is None or value >= self.minimum)
                  and (high is None or value <= high))
            value = float(value) if ok else value
        elif self.kind == "boolean":
            ok = isinstance(value, bool)
        elif self.kind == "latent":
            ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            value = [float(v) for v in value] if ok else value
        else:
            ok = isinstance(value, str) and (self.choices is None or value in self.choices)
        if not ok:
            raise ServingError(f"{name}: {show(value)} is not allowed; {self.rule(high)}")
        return value

    def rule(self, maximum: float | None = None) -> str:
        return self.allowed.format(maximum=self.maximum if maximum is None else maximum)


def _is_integer(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, float) and value.is_integer()  # 3.0 from a JSON client is 3


def _seed_field(name: str, description: str, **extra) -> Field:
    return Field(name, "integer", description, "seeds are integers from 0 to 2**63-1", minimum=0, maximum=MAX_SEED,
                 **extra)


def _class_field(name: str, description: str, **extra) -> Field:
    return Field(name, "integer", description, "use a class index from 0 to {maximum}", minimum=0, **extra)


def _truncation_field() -> Field:
    return Field("truncation", "number", "truncation psi: latent components beyond +-psi are redrawn from the "
                 "seed's own stream (smaller: more typical, less varied images)",
                 f"use a number from {MIN_TRUNCATION:g} to {MAX_TRUNCATION:g} or leave it out",
                 minimum=MIN_TRUNCATION, maximum=MAX_TRUNCATION, example=0.7)


@functools.cache  # built once per limit: requests look fields up, they do not rebuild them
def generate_fields(max_images: int | None) -> dict[str, Field]:
    fraction = f"use a fraction from 1/{MAX_CANDIDATES} to 1"
    fields = [
        Field("n", "integer", "how many images (seeds seed, seed+1, ...)", "use 1 to {maximum}", default=1,
              minimum=1, maximum=max_images),
        _seed_field("seed", "the first seed; image i uses seed + i (random when omitted)", example=42),
        _seed_field("seeds", "explicit seeds, one image each (instead of seed and n)", array=True,
                    max_items=max_images),
        Field("latents", "latent", "latent vectors, one image each (instead of seeds): from /project, or edited",
              "give a list of latents, each a list of latent_dim finite numbers", array=True, max_items=max_images),
        _class_field("class_label", "conditional models: the class of every image (default: seed % classes)"),
        _class_field("labels", "conditional models: a class per image", array=True, max_items=max_images),
        _truncation_field(),
        Field("keep_top", "number", "discriminator-guided: each image is the best of 1/keep_top candidates by D "
              "(0.25: best of 4)", f"{fraction} (0.25 keeps the best of 4 candidates per image)",
              minimum=1 / MAX_CANDIDATES, maximum=1.0, example=0.25),
        Field("drs_accept", "number", "discriminator rejection sampling (Azadi et al. 2019) at this acceptance "
              "rate", f"{fraction} (the share of candidates accepted)", minimum=1 / MAX_CANDIDATES, maximum=1.0,
              example=0.25),
        Field("drs_max_candidates", "integer", "with drs_accept: most candidates per image before the best so "
              "far is returned", f"use 1 to {MAX_CANDIDATES}", default=DEFAULT_DRS_MAX_CANDIDATES, minimum=1,
              maximum=MAX_CANDIDATES),
        Field("max_train_similarity", "number", "redraw (from the seed's own stream) any image whose thumbnail's "
              "cosine similarity to a training image is above this: no near-copies of the training data (plain "
              "generation; models exported with a training index)", "use a number from 0 to 1",
              minimum=0.0, maximum=1.0, example=0.95),
        Field("format", "string", "png (one image, or a grid for n > 1), zip (seedNNNNNNNN.png files), json "
              "(base64 PNGs) or npy (uint8 [N, H, W, C])", "use one of " + ", ".join(GENERATE_FORMATS),
              default="png", choices=GENERATE_FORMATS),
    ]
    return {f.name: f for f in fields}


_LATENT_RULE = "give a list of latent_dim finite numbers"
INTERPOLATE_FIELDS = {f.name: f for f in [
    _seed_field("seed_from", "the first frame is this seed's image (or give latent_from)", example=3),
    _seed_field("seed_to", "the last frame is this seed's image (or give latent_to)", example=7),
    Field("latent_from", "latent", "the first frame's latent, instead of seed_from (from /project)", _LATENT_RULE),
    Field("latent_to", "latent", "the last frame's latent, instead of seed_to", _LATENT_RULE),
    Field("frames", "integer", "frames along the path, both ends included", f"use 2 to {MAX_FRAMES}",
          default=DEFAULT_FRAMES, minimum=2, maximum=MAX_FRAMES),
    _class_field("class_label", "conditional models: the class of every frame (the first frame's, with label_to)"),
    _class_field("label_to", "conditional models: blend the class from class_label to this one across the frames"),
    _truncation_field(),
    Field("format", "string", "png (a strip, left to right) or gif (an animation)",
          "use one of " + ", ".join(INTERPOLATE_FORMATS), default="png", choices=INTERPOLATE_FORMATS),
    Field("frame_ms", "integer", "gif: milliseconds per frame", "use 20 to 5000", default=DEFAULT_FRAME_MS, minimum=20,
          maximum=5000),
]}


@functools.cache
def score_fields(max_images: int | None) -> dict[str, Field]:
    fields = [
        Field("images", "file", "PNG or JPEG files, one image each", array=True, max_items=max_images),
        Field("array", "file", "one .npy file of uint8 images [N, H, W, C] (instead of images)"),
        _class_field("labels", "conditional models: a class per image, as repeated fields or one comma list "
                     "(labels=3,1,4)", array=True, max_items=max_images),
        Field("resize", "boolean", "convert images of another size or colour type to the model's",
              "use true or false", default=False),
    ]
    return {f.name: f for f in fields}


@functools.cache
def project_fields(max_images: int | None) -> dict[str, Field]:
    fields = [
        *score_fields(max_images).values(),
        Field("rounds", "integer", "refinement rounds after the encoder's first guess, each one batched run of G "
              "(0: the encoder alone)", f"use 0 to {MAX_PROJECT_ROUNDS}", default=DEFAULT_PROJECT_ROUNDS, minimum=0,
              maximum=MAX_PROJECT_ROUNDS),
        Field("candidates", "integer", "latents tried per round and image", f"use 2 to {MAX_PROJECT_CANDIDATES}",
              default=DEFAULT_PROJECT_CANDIDATES, minimum=2, maximum=MAX_PROJECT_CANDIDATES),
        Field("format", "string", "json (each image's latent, distances, p_real and reconstruction as a base64 "
              "PNG), npy (the latents, float32 [N, latent_dim]) or png (the reconstruction, or a grid of them)",
              "use one of " + ", ".join(PROJECT_FORMATS), default="json", choices=PROJECT_FORMATS),
    ]
    return {f.name: f for f in fields}


# --- requests ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plain:
    """Each image from its seed's latent."""


@dataclass(frozen=True)
class BestOf:
    """Each image is the candidate D finds most real among `candidates` from the seed's streams."""

    candidates: int


@dataclass(frozen=True)
class Rejection:
    """Discriminator rejection sampling at `rate`, at most `max_candidates` per image."""

    rate: float
    max_candidates: int


Mode = Plain | BestOf | Rejection


@dataclass(frozen=True)
class GenerateRequest:
    seeds: list[int]
    labels: list[int] | None  # one per seed; None: conditional models use seed % classes
    truncation: float | None = None
    mode: Mode = Plain()
    format: str = "png"
    latents: np.ndarray | None = None  # float32 (N, latent_dim), one image each, instead of seeds (then [])
    max_train_similarity: float | None = None  # redraw images closer than this to a training image


@dataclass(frozen=True)
class InterpolateRequest:
    seed_from: int | None  # None: latent_from is the first frame's latent
    seed_to: int | None
    frames: int = DEFAULT_FRAMES
    label: int | None = None  # every frame's class, or the first frame's with label_to
    label_to: int | None = None
    truncation: float | None = None
    format: str = "png"
    frame_ms: int = DEFAULT_FRAME_MS
    latent_from: np.ndarray | None = None  # float32 (latent_dim,)
    latent_to: np.ndarray | None = None


@dataclass(frozen=True)
class ScoreRequest:
    images: np.ndarray  # uint8 (N, H, W, C) of the model's shape
    labels: list[int] | None
    names: list[str]  # how each image is named in the answer


@dataclass(frozen=True)
class ProjectRequest:
    images: np.ndarray  # uint8 (N, H, W, C) of the model's shape
    labels: list[int] | None
    names: list[str]
    rounds: int = DEFAULT_PROJECT_ROUNDS
    candidates: int = DEFAULT_PROJECT_CANDIDATES
    format: str = "json"
    with_p_real: bool = True  # D scores the reconstructions (a model without D: False)


def generate_request(card, *, n=1, seed=None, seeds=None, latents=None, class_label=None, labels=None,
                     truncation=None, keep_top=None, drs_accept=None, drs_max_candidates=DEFAULT_DRS_MAX_CANDIDATES,
                     max_train_similarity=None, format="png", max_images: int | None = None,
                     spell: Spell = _same) -> GenerateRequest:
    """`card`: the model's card (its class count); `max_images`: the most images per request
    (None: no limit, for the engine's own callers)."""
    fields = generate_fields(max_images)
    n = fields["n"].check(n, spell("n"))
    if max_train_similarity is not None:
        request = generate_request(card, n=n, seed=seed, seeds=seeds, latents=latents, class_label=class_label,
                                   labels=labels, truncation=truncation, keep_top=keep_top, drs_accept=drs_accept,
                                   drs_max_candidates=drs_max_candidates, format=format, max_images=max_images,
                                   spell=spell)
        threshold = fields["max_train_similarity"].check(max_train_similarity, spell("max_train_similarity"))
        return _guarded(card, request, threshold, spell)
    if latents is not None:
        return _latents_request(card, fields, n, seed, seeds, latents, class_label, labels, truncation, keep_top,
                                drs_accept, format, spell)
    if seeds is not None:
        seeds = fields["seeds"].check(seeds, spell("seeds"))
        if seed is not None:
            raise ServingError(f"{spell('seeds')}: give either {spell('seed')} (the first of n) or a list of seeds, "
                               "not both")
        if n not in (1, len(seeds)):
            raise ServingError(f"{spell('n')}: {n} does not match the {len(seeds)} seeds given; leave "
                               f"{spell('n')} out")
    else:
        first = fields["seed"].check(seed, spell("seed")) if seed is not None else secrets.randbelow(RANDOM_SEEDS)
        if first + n - 1 > MAX_SEED:
            raise ServingError(f"{spell('seed')}: {first} + n - 1 passes the largest seed 2**63-1; use a smaller "
                               "seed")
        seeds = list(range(first, first + n))
    mode = sampling_mode(keep_top, drs_accept, drs_max_candidates, max_images, spell)
    return GenerateRequest(seeds=seeds, labels=resolve_labels(card.num_classes, len(seeds), class_label, labels,
                                                              fields, spell),
                           truncation=_truncation(truncation, spell), mode=mode_for(card, mode, spell),
                           format=fields["format"].check(format, spell("format")))


def _guarded(card, request: GenerateRequest, threshold: float, spell: Spell) -> GenerateRequest:
    """`request` with the memorisation guard, where the model and the mode allow it."""
    name = spell("max_train_similarity")
    if not card.has_train_index:
        raise NoTrainIndex(f"{name}: model {card.name!r} was exported without an index of its training images; "
                           f"export it again where its data is (or with --index-data), or leave {name} out")
    if request.latents is not None:
        raise ServingError(f"{name}: redraws from seeds' streams, and {spell('latents')} have none; leave one out")
    if not isinstance(request.mode, Plain):
        raise ServingError(f"{name}: redraws in plain generation; leave out {spell('keep_top')} and "
                           f"{spell('drs_accept')}")
    return dataclasses.replace(request, max_train_similarity=threshold)


def _latents_request(card, fields, n, seed, seeds, latents, class_label, labels, truncation, keep_top, drs_accept,
                     format, spell: Spell) -> GenerateRequest:
    """A generate request of given latents: plain generation, one image each. Truncation clips
    each component to +-psi (there is no seed stream to redraw it from)."""
    for name, value in (("seed", seed), ("seeds", seeds)):
        if value is not None:
            raise ServingError(f"{spell('latents')}: give {spell('latents')} or {spell(name)}, not both")
    for name, value in (("keep_top", keep_top), ("drs_accept", drs_accept)):
        if value is not None:
            raise ServingError(f"{spell(name)}: draws candidates from seeds' streams, and {spell('latents')} have "
                               f"none; leave {spell(name)} out")
    z = latent_array(fields["latents"].check(latents, spell("latents")), card.latent_dim, spell("latents"))
    if n not in (1, len(z)):
        raise ServingError(f"{spell('n')}: {n} does not match the {len(z)} latents given; leave {spell('n')} out")
    chosen = resolve_labels(card.num_classes, len(z), class_label, labels, fields, spell)
    if card.num_classes and chosen is None:
        raise ServingError(f"{spell('labels')}: this model is conditional on {card.num_classes} classes; with "
                           f"{spell('latents')} give {spell('class_label')} or {spell('labels')}")
    psi = _truncation(truncation, spell)
    if psi is not None:
        z = np.clip(z, -psi, psi)
    return GenerateRequest(seeds=[], labels=chosen, truncation=psi, mode=Plain(),
                           format=fields["format"].check(format, spell("format")), latents=z)


def latent_array(values: list, latent_dim: int, name: str) -> np.ndarray:
    """Checked latents (lists of finite numbers) as float32 (N, latent_dim)."""
    for i, vector in enumerate(values):
        if len(vector) != latent_dim:
            raise ServingError(f"{name}[{i}]: {len(vector)} numbers; this model's latents have {latent_dim}")
    return np.asarray(values, np.float32)


def sampling_mode(keep_top=None, drs_accept=None, drs_max_candidates=DEFAULT_DRS_MAX_CANDIDATES,
                  max_images: int | None = None, spell: Spell = _same) -> Mode:
    fields = generate_fields(max_images)
    if keep_top is not None and drs_accept is not None:
        raise ServingError(f"{spell('drs_accept')}: give {spell('keep_top')} or {spell('drs_accept')}, not both")
    cap = fields["drs_max_candidates"].check(drs_max_candidates, spell("drs_max_candidates"))
    if drs_accept is not None:
        return Rejection(fields["drs_accept"].check(drs_accept, spell("drs_accept")), cap)
    if keep_top is not None:
        candidates = max(1, round(1.0 / fields["keep_top"].check(keep_top, spell("keep_top"))))
        return BestOf(candidates) if candidates > 1 else Plain()
    return Plain()


def mode_for(card, mode: Mode, spell: Spell = _same) -> Mode:
    """`mode`, if the model can run it: guided modes need a discriminator, which a model
    imported as a generator only does not have."""
    if isinstance(mode, Plain) or card.has_discriminator:
        return mode
    name = "keep_top" if isinstance(mode, BestOf) else "drs_accept"
    raise NoDiscriminator(f"{spell(name)}: model {card.name!r} has no discriminator (it was imported as a generator "
                          f"only), so it cannot pick images by D; leave {spell(name)} out")


def resolve_labels(num_classes: int, count: int, class_label, labels, fields: dict[str, Field],
                   spell: Spell = _same) -> list[int] | None:
    """One label per image from class_label (all alike) or labels (one each); None when neither."""
    if class_label is not None and labels is not None:
        raise ServingError(f"{spell('labels')}: give either {spell('class_label')} (one for all) or "
                           f"{spell('labels')} (one per image), not both")
    if class_label is None and labels is None:
        return None
    name = "class_label" if class_label is not None else "labels"
    unconditional(num_classes, name, spell)
    if class_label is not None:
        return [fields["class_label"].check(class_label, spell("class_label"), maximum=num_classes - 1)] * count
    checked = fields["labels"].check(labels, spell("labels"), maximum=num_classes - 1)
    if len(checked) != count:
        raise ServingError(f"{spell('labels')}: got {len(checked)} labels for {count} images; give one per image")
    return checked


def check_labels(num_classes: int, labels: Sequence[int], spell: Spell = _same, name: str = "labels") -> list[int]:
    """Labels of any count (the command line cycles them over the seeds) against the model."""
    unconditional(num_classes, name, spell)
    return _class_field(name, "", array=True).check(list(labels), spell(name), maximum=num_classes - 1)


def unconditional(num_classes: int, name: str, spell: Spell = _same) -> None:
    """Refuse a class for a model that has none."""
    if not num_classes:
        raise ServingError(f"{spell(name)}: this model is unconditional; leave {spell(name)} out")


def _truncation(value, spell: Spell) -> float | None:
    return None if value is None else INTERPOLATE_FIELDS["truncation"].check(value, spell("truncation"))


def interpolate_request(card, *, seed_from=None, seed_to=None, frames=DEFAULT_FRAMES, class_label=None,
                        label_to=None, truncation=None, format="png", frame_ms=DEFAULT_FRAME_MS, latent_from=None,
                        latent_to=None, spell: Spell = _same) -> InterpolateRequest:
    fields = INTERPOLATE_FIELDS
    ends = {}
    for name, value, latent_name, latent, end in (("seed_from", seed_from, "latent_from", latent_from, "first"),
                                                  ("seed_to", seed_to, "latent_to", latent_to, "last")):
        if value is None and latent is None:
            raise ServingError(f"{spell(name)}: missing; give the seed of the {end} frame (or {spell(latent_name)})")
        if value is not None and latent is not None:
            raise ServingError(f"{spell(latent_name)}: give {spell(name)} or {spell(latent_name)}, not both")
        if latent is not None:
            checked = fields[latent_name].check(latent, spell(latent_name))
            ends[latent_name] = latent_array([checked], card.latent_dim, spell(latent_name))[0]
    if ends and card.num_classes and class_label is None:
        raise ServingError(f"{spell('class_label')}: this model is conditional; with a latent end give the class "
                           f"({spell('class_label')})")
    label, label_to_checked = None, None
    for name, value in (("class_label", class_label), ("label_to", label_to)):
        if value is not None:
            unconditional(card.num_classes, name, spell)
            checked = fields[name].check(value, spell(name), maximum=card.num_classes - 1)
            label, label_to_checked = (checked, label_to_checked) if name == "class_label" else (label, checked)
    if label_to_checked is not None and label is None:
        raise ServingError(f"{spell('label_to')}: give the first frame's class too ({spell('class_label')})")
    if label_to_checked is not None and "generator_blend" not in card.graphs:
        raise ServingError(f"{spell('label_to')}: this model folder has no generator_blend graph (it was exported by "
                           "an older ganserve); export it again to interpolate between classes")
    return InterpolateRequest(seed_from=None if seed_from is None else fields["seed_from"].check(seed_from,
                                                                                                 spell("seed_from")),
                              seed_to=None if seed_to is None else fields["seed_to"].check(seed_to, spell("seed_to")),
                              frames=fields["frames"].check(frames, spell("frames")), label=label,
                              label_to=label_to_checked, truncation=_truncation(truncation, spell),
                              format=fields["format"].check(format, spell("format")),
                              frame_ms=fields["frame_ms"].check(frame_ms, spell("frame_ms")),
                              latent_from=ends.get("latent_from"), latent_to=ends.get("latent_to"))


def require_discriminator(card) -> None:
    """Refuse to score with a model imported as a generator only."""
    if not card.has_discriminator:
        raise NoDiscriminator(f"model {card.name!r} has no discriminator (it was imported as a generator only), so "
                              "it cannot score images; import it with its discriminator to score")


def score_request(card, images: np.ndarray, labels=None, names: list[str] | None = None,
                  max_images: int | None = None, spell: Spell = _same, source: str = "images") -> ScoreRequest:
    """`images`: uint8 (N, H, W, C), decoded by the caller; `source`: the field they came in."""
    require_discriminator(card)
    images, labels = _checked_images(card, images, labels, max_images, spell, source)
    return ScoreRequest(images, labels, names or [f"{source}[{i}]" for i in range(len(images))])


def _checked_images(card, images, labels, max_images: int | None, spell: Spell, source: str,
                    verb: str = "scores"):
    """Images of the model's shape, within the limit, with one label each for a conditional model."""
    height, width, channels = card.image_shape
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or \
            images.shape[1:] != (height, width, channels):
        got = f"{images.dtype} {list(images.shape)}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ServingError(f"{spell(source)}: got {got}; the model {verb} uint8 images of shape "
                           f"[N, {height}, {width}, {channels}]")
    if len(images) == 0:
        raise ServingError(f"{spell(source)}: no images; send at least one")
    if max_images is not None and len(images) > max_images:
        raise ServingError(f"{spell(source)}: {len(images)} images is more than the limit of {max_images}")
    if labels is not None:
        labels = resolve_labels(card.num_classes, len(images), None, labels, score_fields(max_images), spell)
    elif card.num_classes:
        raise ServingError(f"{spell('labels')}: this model is conditional on {card.num_classes} classes; give one "
                           "label per image")
    return np.ascontiguousarray(images), labels


def require_encoder(card) -> None:
    if not card.has_encoder:
        raise NoEncoder(f"model {card.name!r} has no encoder, so it cannot project images; train one with "
                        "'ganserve train-encoder RUN' and export the run again")


def projection_search(rounds, candidates, spell: Spell = _same) -> tuple[int, int]:
    """The refinement's (rounds, candidates), checked alone and together."""
    fields = project_fields(None)
    rounds = fields["rounds"].check(rounds, spell("rounds"))
    candidates = fields["candidates"].check(candidates, spell("candidates"))
    if rounds * candidates > MAX_PROJECT_RUNS:
        raise ServingError(f"{spell('rounds')}: {rounds} rounds of {candidates} candidates is {rounds * candidates} "
                           f"runs of G per image, more than the limit of {MAX_PROJECT_RUNS}; lower "
                           f"{spell('rounds')} or {spell('candidates')}")
    return rounds, candidates


def project_request(card, images: np.ndarray, labels=None, names: list[str] | None = None, *,
                    rounds=DEFAULT_PROJECT_ROUNDS, candidates=DEFAULT_PROJECT_CANDIDATES, format="json",
                    max_images: int | None = None, spell: Spell = _same, source: str = "images") -> ProjectRequest:
    require_encoder(card)
    fields = project_fields(max_images)
    images, labels = _checked_images(card, images, labels, max_images, spell, source, "projects")
    rounds, candidates = projection_search(rounds, candidates, spell)
    return ProjectRequest(images, labels, names or [f"{source}[{i}]" for i in range(len(images))], rounds,
                          candidates, fields["format"].check(format, spell("format")), card.has_discriminator)


# --- lists written as text (the command line, form fields) -------------------------------------

MAX_LIST_VALUES = 100_000_000  # seeds or labels in one text list


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """'0-3,10' -> [0, 1, 2, 3, 10]. Ranges are inclusive; order is kept; duplicates refused."""
    seeds = _parse_list(text, flag, "seed", "seeds run from 0 to 2**63-1")
    if len(set(seeds)) != len(seeds):
        raise ServingError(f"{flag}: {text!r} lists a seed more than once")
    return seeds


def parse_labels(text: str, flag: str = "--labels") -> list[int]:
    """'1,1,2' or '0-9' -> class indices, in order; a class may repeat. The model's class count
    is checked where the model is known."""
    return _parse_list(text, flag, "class index", "class indices start at 0")


def _parse_list(text: str, flag: str, what: str, allowed: str) -> list[int]:
    """Comma-separated integers and inclusive ranges low-high, in order."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low_text, dash, high_text = part.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if dash else low
        except ValueError:
            raise ServingError(f"{flag}: {part!r} is not a {what} or a range like 0-99") from None
        if not 0 <= low <= high <= MAX_SEED:
            raise ServingError(f"{flag}: {part!r} is not allowed; {allowed}, ranges low-high")
        if len(values) + high - low + 1 > MAX_LIST_VALUES:
            raise ServingError(f"{flag}: more than {MAX_LIST_VALUES} values; split the job with --shard")
        values.extend(range(low, high + 1))
    return values
