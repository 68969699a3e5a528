"""The Open Inference Protocol (KServe v2) over REST, beside ganserve's own routes and on the
same models, batchers, limits, keys and metrics.

Every model NAME of the repository is two OIP models:

    NAME                  the generator: SEED INT64 [N] (or [N, 1]), and LABEL INT64 [N] for a
                          conditional model -> IMAGE UINT8 [N, H, W, C]; request parameters
                          truncation, keep_top, drs_accept, drs_max_candidates as in /generate
    NAME.discriminator    D: IMAGE UINT8 [N, H, W, C] (+ LABEL) -> LOGIT FP32 [N], P_REAL FP32 [N]

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     {"live": true}, {"ready": true} (503 when not)
    GET  /v2/models/{m}[/versions/{v}]         metadata: the tensors, the versions
    GET  /v2/models/{m}[/versions/{v}]/ready   200 when it can be served
    POST /v2/models/{m}[/versions/{v}]/infer   JSON tensors or the binary tensor data extension

A request is built with the same builders as /generate and /score, so a rule and its message
are the same; fields are named as the protocol names them (`SEED[2]`, `parameters.keep_top`).
IMAGE for some seeds is byte-identical to /generate's `npy` for those seeds.
"""

from __future__ import annotations

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from ..formats import oip
from ..requests import generate_request, require_discriminator, score_request
from ..sampling import modes
from ..sampling.latents import discriminator_feeds
from .metrics import IMAGES_GENERATED, IMAGES_SCORED, PROBABILITY
from .parsing import read_body

DISCRIMINATOR_SUFFIX = ".discriminator"
GENERATE_PARAMETERS = ("truncation", "keep_top", "drs_accept", "drs_max_candidates")
# Request parameters clients of the protocol send for their own reasons: accepted, not used.
PROTOCOL_PARAMETERS = {"timeout", "priority", "sequence_id", "sequence_start", "sequence_end", "headers"}
SPELLING = {"seeds": "SEED", "labels": "LABEL", "images": "IMAGE"}


def routes(serving, answering) -> list[Route]:
    limit = serving.settings.max_body_bytes

    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "ganserve", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def live(request: Request) -> Response:
        alive = serving.load_error is None
        return JSONResponse({"live": alive}, status_code=200 if alive else 503)

    async def ready(request: Request) -> Response:
        is_ready = serving.server_ready()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    async def model_metadata(request: Request) -> Response:
        name, part, version = _target(request)
        registry = serving.ready_registry()
        state = registry.state_of(name)
        async with serving.use_model(name, version) as served:
            card = served.engine.card
            if part == "discriminator":
                require_discriminator(card)
            labels = [_tensor("LABEL", "INT64", [-1])] if card.num_classes else []
            image = _tensor("IMAGE", "UINT8", [-1, card.height, card.width, card.channels])
            if part == "generator":
                inputs, outputs = [_tensor("SEED", "INT64", [-1]), *labels], [image]
                parameters = {name: serving.generate_fields[name].description for name in GENERATE_PARAMETERS}
            else:
                inputs, outputs = [image, *labels], [_tensor("LOGIT", "FP32", [-1]), _tensor("P_REAL", "FP32", [-1])]
                parameters = {}
            return JSONResponse({"name": request.path_params["model"], "versions": list(state.disk.versions),
                                 "platform": "ganserve_onnx", "inputs": inputs, "outputs": outputs,
                                 "parameters": parameters, "served_version": served.version},
                                headers=served.headers())

    async def model_ready(request: Request) -> Response:
        name, part, version = _target(request)
        state = serving.ready_registry().state_of(name)
        servable = state.disk.problem is None and (state.live is not None or any(
            v.complete and state.refusal_of(v) is None for v in state.disk.versions.values()))
        if version is not None and (state.live is None or state.live.version != version):
            servable = False
        if part == "discriminator" and state.live and not state.cards.get(state.live.version, {}).get(
                "has_discriminator", True):
            servable = False
        return JSONResponse({"name": request.path_params["model"], "ready": servable},
                            status_code=200 if servable else 400)

    async def infer(request: Request) -> Response:
        body = await read_body(request, limit)
        wanted = oip.parse_request(body, request.headers.get(oip.HEADER_LENGTH))
        name, part, version = _target(request)
        async with serving.use_model(name, version) as served:
            if part == "generator":
                outputs = await _generate(serving, served, wanted)
            else:
                outputs = await _score(serving, served, wanted)
        content, headers = oip.encode_response(request.path_params["model"], served.version, wanted, outputs)
        return Response(content, headers={**headers, **served.headers()})

    model_paths = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
    return [Route("/v2", answering(server_metadata), methods=["GET"]),
            Route("/v2/health/live", answering(live), methods=["GET"]),
            Route("/v2/health/ready", answering(ready), methods=["GET"]),
            *[Route(path, answering(model_metadata), methods=["GET"]) for path in model_paths],
            *[Route(f"{path}/ready", answering(model_ready), methods=["GET"]) for path in model_paths],
            *[Route(f"{path}/infer", answering(infer), methods=["POST"]) for path in model_paths]]


def _target(request: Request) -> tuple[str, str, str | None]:
    """(ganserve model, "generator" or "discriminator", pinned version) of the path's OIP model."""
    model, version = request.path_params["model"], request.path_params.get("version")
    if model.endswith(DISCRIMINATOR_SUFFIX):
        return model.removesuffix(DISCRIMINATOR_SUFFIX), "discriminator", version
    return model, "generator", version


def _tensor(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


def _spell(name: str) -> str:
    return SPELLING.get(name, f"parameters.{name}")


async def _generate(serving, served, wanted: oip.InferRequest) -> dict:
    card = served.engine.card
    oip.check_output_names(wanted, ("IMAGE",))
    _only_inputs(wanted, ("SEED", "LABEL") if card.num_classes else ("SEED",))
    unknown = sorted(set(wanted.parameters) - set(GENERATE_PARAMETERS) - PROTOCOL_PARAMETERS)
    if unknown:
        raise oip.ProtocolError(f"parameters.{unknown[0]}: not a parameter of this model; its parameters are "
                                f"{', '.join(GENERATE_PARAMETERS)}")
    seeds = _column(wanted, "SEED", required=True)
    labels = _column(wanted, "LABEL")
    parameters = {name: wanted.parameters[name] for name in GENERATE_PARAMETERS if name in wanted.parameters}
    request = generate_request(card, seeds=seeds, labels=labels, **parameters, format="npy",
                               max_images=serving.settings.max_images, spell=_spell)
    sampled = await modes.sample(request, served.graphs)
    IMAGES_GENERATED.inc(len(sampled.images))
    return {"IMAGE": sampled.images}


async def _score(serving, served, wanted: oip.InferRequest) -> dict:
    card = served.engine.card
    require_discriminator(card)
    oip.check_output_names(wanted, ("LOGIT", "P_REAL"))
    _only_inputs(wanted, ("IMAGE", "LABEL") if card.num_classes else ("IMAGE",))
    unknown = sorted(set(wanted.parameters) - PROTOCOL_PARAMETERS)
    if unknown:
        raise oip.ProtocolError(f"parameters.{unknown[0]}: not a parameter of this model; it takes none")
    image = wanted.inputs.get("IMAGE")
    if image is None:
        raise oip.ProtocolError("IMAGE: missing; give the images as UINT8 [N, H, W, C]")
    if image.datatype != "UINT8":
        raise oip.ProtocolError(f"IMAGE: datatype {image.datatype} is not allowed; use UINT8")
    request = score_request(card, image.array, _column(wanted, "LABEL"), max_images=serving.settings.max_score_images,
                            spell=_spell, source="images")
    labels = None if request.labels is None else np.asarray(request.labels, np.int64)
    logits = await served.score_batcher.submit(discriminator_feeds(request.images, labels))
    probabilities = served.engine.probability(logits)
    IMAGES_SCORED.inc(len(logits))
    for p in probabilities:
        PROBABILITY.observe(float(p))
    return {"LOGIT": logits.astype("float32"), "P_REAL": probabilities}


def _only_inputs(wanted: oip.InferRequest, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(wanted.inputs) - set(allowed))
    if unknown:
        raise oip.ProtocolError(f"{unknown[0]}: not an input of this model; its inputs are {', '.join(allowed)}")


def _column(wanted: oip.InferRequest, name: str, required: bool = False) -> list[int] | None:
    """An INT64 input of shape [N] or [N, 1], as a list."""
    tensor = wanted.inputs.get(name)
    if tensor is None:
        if required:
            raise oip.ProtocolError(f"{name}: missing; give it as INT64 of shape [N]")
        return None
    if tensor.datatype != "INT64":
        raise oip.ProtocolError(f"{name}: datatype {tensor.datatype} is not allowed; use INT64")
    shape = tensor.array.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise oip.ProtocolError(f"{name}: shape {list(shape)} is not allowed; use [N] (or [N, 1])")
    return tensor.array.reshape(-1).tolist()
