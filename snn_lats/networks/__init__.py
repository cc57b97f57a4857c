"""The networks: SEW ResNets (and the SEW paper's event-camera 7B-Nets) and spiking transformers
(Spikformer, Spike-driven Transformer, QKFormer) on SpikingJelly multi-step neurons, and ANNs as the case T = 1.

Every network built here takes a static batch ``[N, C, H, W]`` or a sequence ``[T, N, C, H, W]``,
returns logits ``[N, num_classes]`` (the time-mean), resets its neuron state at the start of every
forward, and has the attributes ``T`` (int) and ``spiking`` (bool). The CLI and recipes build them
by name: ``create("sew_resnet18", num_classes=10, T=4, width=16, stem="cifar")``.
"""

from typing import TYPE_CHECKING

from snn_lats import _lazy

# The exports, imported from their submodule on first use (snn_lats._lazy says why).
if TYPE_CHECKING:
    from .mobilenet import MobileNetV1, mobilenet_v1
    from .neurons import NEURONS, cupy_usable, make_neuron, set_backend
    from .qkformer import QKFormer, qkformer_10_384, qkformer_10_512, qkformer_10_768
    from .registry import ALL_BACKENDS, CNFS, FAMILIES, NEURON_KINDS, STEMS, create, names, register
    from .resnet import ResNet, resnet18, resnet34, resnet50, resnet101, resnet152
    from .sew_dvs import SEWEventNet, sew_7b_net, sew_wide_7b_net
    from .sew_resnet import SEWResNet, sew_resnet18, sew_resnet34, sew_resnet50, sew_resnet101, sew_resnet152
    from .spike_driven import SpikeDrivenTransformer, sdt_2_512_cifar, sdt_8_384, sdt_8_512, sdt_8_768
    from .spikformer import Spikformer, spikformer_4_384_cifar, spikformer_8_384, spikformer_8_512, spikformer_8_768
    from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm

__all__, __getattr__, __dir__ = _lazy.attach(__name__)
