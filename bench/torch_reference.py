"""PyTorch version of the study's run-3 GAN step, for benchmarks ONLY (torch is not a package dependency).

The layers are those of `covid_keras.gan` (itself the study's architecture): the generator's
ConvTranspose blocks use PyTorch's padding/output_padding where Keras crops, with the crops of
`gan_networks.upsampling_plan`, so both output exactly `image_size`. The step is the study's loop as
`ConditionalGAN.train_step` runs it: G steps every batch (D in train mode, loss against "real"),
D steps when `step % d_every == 0` on the real batch and the same detached fakes,
loss (BCE(real, 1) + BCE(fake, 0)) / 2. D returns a logit; BCE-with-logits is the study's
Sigmoid + BCE. Layouts are NCHW here; `copy_keras_weights` maps Keras (NHWC) weights across.

Import this module only inside bench/: it imports torch at the top.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from covid_keras.gan.networks import resolve_discriminator_padding, upsampling_plan

_BN = dict(momentum=0.1, eps=1e-5)  # = Keras momentum 0.9, epsilon 1e-5 (covid_keras.gan.networks._BN)


class Generator(nn.Module):
    def __init__(
        self,
        image_size: int,
        noise_dim: int = 128,
        num_classes: int = 2,
        embedding_dim: int = 50,
        filters: Sequence[int] = (256, 128, 64, 32),
        base_channels: int = 128,
    ):
        super().__init__()
        self.base, crops = upsampling_plan(image_size, len(filters))
        self.base_channels = base_channels
        self.noise_dense = nn.Linear(noise_dim, self.base * self.base * base_channels)
        self.label_embedding = nn.Embedding(num_classes, embedding_dim)
        self.label_dense = nn.Linear(embedding_dim, self.base * self.base)
        blocks, channels = [], base_channels + 1
        for n_filters, crop in zip(filters, crops):
            # Keras crops ceil(c/2) top/left and floor(c/2) bottom/right = padding ceil(c/2), output_padding c % 2.
            # No bias before BN (BN's mean subtraction cancels it), as in covid_keras.gan.
            deconv = nn.ConvTranspose2d(channels, n_filters, 4, stride=2, padding=(crop + 1) // 2,
                                        output_padding=crop % 2, bias=False)
            blocks += [deconv, nn.BatchNorm2d(n_filters, **_BN), nn.ReLU()]
            channels = n_filters
        blocks += [nn.ConvTranspose2d(channels, 1, 4, stride=1, padding=1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, noise: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.noise_dense(noise)).view(-1, self.base_channels, self.base, self.base)
        y = self.label_dense(self.label_embedding(label)).view(-1, 1, self.base, self.base)
        return self.blocks(torch.cat([x, y], dim=1))


class Discriminator(nn.Module):
    def __init__(
        self,
        image_size: int,
        num_classes: int = 2,
        embedding_dim: int = 50,
        filters: Sequence[int] = (64, 64, 64, 64, 64),
        padding: str = "auto",
        leaky_relu_slope: float = 0.01,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.image_size = image_size
        pad = 0 if resolve_discriminator_padding(image_size, len(filters), padding) == "valid" else "same"
        if pad == "same" and len(filters) > 2:
            raise ValueError("the torch reference only mirrors 'valid' padding (stride-2 'same' differs across frameworks)")
        self.label_embedding = nn.Embedding(num_classes, embedding_dim)
        self.label_dense = nn.Linear(embedding_dim, image_size * image_size)
        layers = [nn.Conv2d(2, filters[0], 4, stride=1, padding=pad), nn.LeakyReLU(leaky_relu_slope)]
        channels = filters[0]
        for n_filters in filters[1:-1]:
            layers += [nn.Conv2d(channels, n_filters, 4, stride=2, padding=pad, bias=False), nn.BatchNorm2d(n_filters, **_BN),
                       nn.LeakyReLU(leaky_relu_slope)]
            channels = n_filters
        layers += [nn.Conv2d(channels, filters[-1], 4, stride=1, padding=pad), nn.LeakyReLU(leaky_relu_slope)]
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, 2, image_size, image_size)).numel()
        self.dropout = nn.Dropout(dropout)
        self.logit = nn.Linear(flat, 1)

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        y = self.label_dense(self.label_embedding(label)).view(-1, 1, self.image_size, self.image_size)
        x = self.convs(torch.cat([image, y], dim=1))
        return self.logit(self.dropout(torch.flatten(x, 1)))


class KerasFormulaAdam(torch.optim.Optimizer):
    """Adam as Keras 3 writes it, for the equality check (timing uses torch's own Adam).

    Keras adds epsilon to sqrt(v) and folds both bias corrections into the rate:
    w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps). torch adds epsilon after
    correcting v, which equals Keras with eps * sqrt(1 - b2^t): 30x smaller at step 1. For the
    many weights whose gradient is below 1e-6 the two updates then differ by much more than
    rounding, so a float-tolerance comparison needs the same formula on both sides.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float], eps: float):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            (beta_1, beta_2), eps = group["betas"], group["eps"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state.update(t=0, m=torch.zeros_like(parameter), v=torch.zeros_like(parameter))
                state["t"] += 1
                state["m"].add_((parameter.grad - state["m"]) * (1 - beta_1))
                state["v"].add_((parameter.grad.square() - state["v"]) * (1 - beta_2))
                alpha = group["lr"] * math.sqrt(1 - beta_2 ** state["t"]) / (1 - beta_1 ** state["t"])
                parameter.sub_(state["m"] * alpha / (state["v"].sqrt() + eps))


class TorchGanStep:
    """The run-3 step: Adam for G and D, cosine warm restarts stepped per update, D every `d_every` steps.

    adam: "torch" (torch.optim.Adam, what a PyTorch user runs; timed) or "keras" (`KerasFormulaAdam`).
    """

    def __init__(self, generator: Generator, discriminator: Discriminator, d_every: int = 10, learning_rate: float = 2e-4,
                 betas: tuple[float, float] = (0.9, 0.999), g_restart_updates: int = 5430, d_restart_updates: int = 543,
                 adam: str = "torch"):
        self.generator, self.discriminator, self.d_every = generator, discriminator, d_every
        adam_class = {"torch": torch.optim.Adam, "keras": KerasFormulaAdam}[adam]
        self.g_optimizer = adam_class(generator.parameters(), lr=learning_rate, betas=betas, eps=1e-8)
        self.d_optimizer = adam_class(discriminator.parameters(), lr=learning_rate, betas=betas, eps=1e-8)
        self.g_schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(self.g_optimizer, T_0=g_restart_updates)
        self.d_schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(self.d_optimizer, T_0=d_restart_updates)
        self.bce = nn.BCEWithLogitsLoss()
        self.step = 0

    def __call__(self, real_images, real_labels, noise, fake_labels) -> tuple[float, float | None]:
        """One step on NCHW tensors; returns (g_loss, d_loss or None when D did not step)."""
        self.generator.train()
        self.discriminator.train()
        # G step. D's weights get no gradients here (TF's tape does not compute them either).
        self.discriminator.requires_grad_(False)
        fakes = self.generator(noise, fake_labels)
        logits = self.discriminator(fakes, fake_labels)
        g_loss = self.bce(logits, torch.ones_like(logits))
        self.g_optimizer.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optimizer.step()
        self.g_schedule.step()
        self.discriminator.requires_grad_(True)

        d_loss = None
        if self.step % self.d_every == 0:
            fakes = fakes.detach()
            real_logits = self.discriminator(real_images, real_labels)
            fake_logits = self.discriminator(fakes, fake_labels)
            loss = (self.bce(real_logits, torch.ones_like(real_logits)) + self.bce(fake_logits, torch.zeros_like(fake_logits))) / 2
            self.d_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.d_optimizer.step()
            self.d_schedule.step()
            d_loss = float(loss.detach())
        self.step += 1
        return float(g_loss.detach()), d_loss


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (BN's gamma/beta included, its running statistics not)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- Keras -> torch weights


def _set(parameter: torch.Tensor, value: np.ndarray) -> None:
    value = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if tuple(parameter.shape) != tuple(value.shape):
        raise ValueError(f"shape mismatch copying Keras weights: torch {tuple(parameter.shape)} vs {tuple(value.shape)}")
    with torch.no_grad():
        parameter.copy_(value)


def _hwc_to_chw_rows(kernel: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """Reorder a Dense kernel's rows (or columns via .T) from Keras' HWC flattening to torch's CHW."""
    return kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(height * width * channels, -1)


def _copy_layers(keras_model, torch_layers: list[nn.Module], prefix_types: tuple) -> None:
    keras_layers = [layer for layer in keras_model.layers if layer.__class__.__name__ in prefix_types]
    if len(keras_layers) != len(torch_layers):
        raise ValueError(f"{keras_model.name}: {len(keras_layers)} Keras layers vs {len(torch_layers)} torch layers")
    for keras_layer, torch_layer in zip(keras_layers, torch_layers):
        weights = [np.asarray(w) for w in keras_layer.weights]
        if isinstance(torch_layer, nn.BatchNorm2d):
            gamma, beta, mean, variance = weights
            for parameter, value in zip((torch_layer.weight, torch_layer.bias, torch_layer.running_mean, torch_layer.running_var),
                                        (gamma, beta, mean, variance)):
                _set(parameter, value)
        else:
            kernel, *bias = weights
            if bool(bias) != (torch_layer.bias is not None):
                raise ValueError(f"{keras_layer.name}: use_bias differs between the Keras and torch layers")
            # Conv2D (kh, kw, in, out) -> (out, in, kh, kw); Conv2DTranspose (kh, kw, out, in) -> (in, out, kh, kw).
            _set(torch_layer.weight, kernel.transpose(3, 2, 0, 1))
            if bias:
                _set(torch_layer.bias, bias[0])


def copy_keras_generator(keras_generator, generator: Generator) -> None:
    layer = keras_generator.get_layer
    base, channels = generator.base, generator.base_channels
    kernel, bias = (np.asarray(w) for w in layer("noise_dense").weights)
    _set(generator.noise_dense.weight, _hwc_to_chw_rows(kernel.T, base, base, channels))
    _set(generator.noise_dense.bias, _hwc_to_chw_rows(bias[:, None], base, base, channels)[:, 0])
    _set(generator.label_embedding.weight, np.asarray(layer("label_embedding").weights[0]))
    kernel, bias = (np.asarray(w) for w in layer("label_dense").weights)
    _set(generator.label_dense.weight, kernel.T)
    _set(generator.label_dense.bias, bias)
    torch_layers = [m for m in generator.blocks if isinstance(m, (nn.ConvTranspose2d, nn.BatchNorm2d))]
    _copy_layers(keras_generator, torch_layers, ("Conv2DTranspose", "BatchNormalization"))


def copy_keras_discriminator(keras_discriminator, discriminator: Discriminator) -> None:
    layer = keras_discriminator.get_layer
    _set(discriminator.label_embedding.weight, np.asarray(layer("label_embedding").weights[0]))
    kernel, bias = (np.asarray(w) for w in layer("label_dense").weights)
    _set(discriminator.label_dense.weight, kernel.T)
    _set(discriminator.label_dense.bias, bias)
    torch_layers = [m for m in discriminator.convs if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    _copy_layers(keras_discriminator, torch_layers, ("Conv2D", "BatchNormalization"))
    height, width, channels = layer("flatten").input.shape[1:]
    kernel, bias = (np.asarray(w) for w in layer("logit").weights)
    _set(discriminator.logit.weight, _hwc_to_chw_rows(kernel, height, width, channels).T)
    _set(discriminator.logit.bias, bias)
