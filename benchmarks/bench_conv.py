"""Stacked convolutions: which form trains M copies fastest, against one network's.

A convolution of ``M`` particles, each with its own filters and its own
mini-batch (as in training), forward and backward (a gradient for the input,
the filters and the bias), in the forms the package can take:

- ``copy by copy``: each copy's own ``F.conv2d`` on its slice of the stacked
  input, channels-last, the outputs stacked (what ``kernels.conv`` does on
  the CPU); the input and the output's gradient come as in a network, each
  copy channels-last;
- ``copy by copy NCHW``: the same in the usual layout (``(N, C, H, W)``
  contiguous);
- ``grouped``: the particle axis folded into the channels, one grouped
  convolution with ``M`` groups (what ``kernels.conv`` does on CUDA devices);
- ``grouped CL``: the same in the channels-last memory layout;
- ``vmap``: :func:`torch.func.vmap` of one copy's ``F.conv2d`` over the
  particle axis (which batches it as a grouped convolution);
- ``compiled`` (with ``--compile``): ``torch.compile`` of the copy-by-copy
  form written out (torch's inductor; needs a C++ compiler).

Each is timed as the shortest mean of ``--repeats`` rounds of ``--steps``
steps, the forms and one network's convolution taking turns in every round,
and reported as a ratio to ``M`` times one network's convolution of the
same shape, timed in the same process (``x copies``: 1.0 is the cost of
training the copies one after another; less is faster). Layer shapes: the two
convolutions of ``bench_images.py``'s CNN on the digits (8x8), those of a
28x28 CNN (Conv-ReLU-pool x2, 32 and 64 channels) and a ResNet-18 block
convolution on 32x32 CIFAR-shaped inputs (64 channels, 32 rows). Torch at
``--threads`` threads (default 1).

A second table times whole training steps (forward, cross-entropy, backward,
Adam) of ``bench_images.py``'s CNN on 128 digits-shaped images per copy:
``M`` particles as the package's stack (``ParticleStack``, fused Adam), the
``M`` copies one after another as plain torch networks in the usual layout
(``copies NCHW``) and channels-last (``copies CL``, network and input
converted once), each as a ratio to one network's step in the usual layout
(``x one``), and ``stack / copies CL``: whether the batched step costs more
than the fastest form of the copies one after another. glibc hands stacked
activations of a few MB back to the system and faults them in afresh at every
step; run with ``MALLOC_MMAP_THRESHOLD_=4294967296
MALLOC_TRIM_THRESHOLD_=17179869184`` to see the steps without that cost.

Run from the repository root::

    python benchmarks/bench_conv.py
    python benchmarks/bench_conv.py --particles 3,8 --threads 2
    python benchmarks/bench_conv.py --particles 3 --compile
"""

import time

import torch
import torch.nn.functional as F
from _common import (
    argument_parser,
    command_line,
    particles_folded,
    pin_threads,
    print_head,
    row,
)
from bench_images import BATCH_SIZE, LR, SmallCNN

from sklearn_swag._network.lowering import kernels
from sklearn_swag._network.stack import ParticleStack

#: The forms compared, by their column title.
FORMS = {
    "copy by copy": lambda: package_conv(False),
    "copy by copy NCHW": lambda: copy_by_copy,
    "grouped": lambda: package_conv(True),
    "grouped CL": lambda: grouped_channels_last,
    "vmap": lambda: vmapped,
}

#: name, rows per batch, channels in, channels out, height = width
SHAPES = [
    ("digits conv1", 128, 1, 16, 8),
    ("digits conv2", 128, 16, 32, 8),
    ("28x28 conv1", 128, 1, 32, 28),
    ("28x28 conv2", 128, 32, 64, 14),
    ("ResNet-18 block", 32, 64, 64, 32),
]


def seconds_per_step(steps_by_name, steps, repeats):
    """The shortest mean seconds of each step over ``repeats`` rounds.

    The steps take turns within every round, so that a slow moment of a
    shared machine falls on all of them.
    """
    for step in steps_by_name.values():
        for _ in range(2):
            step()
    best = dict.fromkeys(steps_by_name, float("inf"))
    for _ in range(repeats):
        for name, step in steps_by_name.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return best


def package_conv(fold):
    """``kernels.conv`` with the particles folded into the channels or not."""

    def conv(x, w, b):
        with particles_folded(fold):
            return kernels.conv(
                x, w, b, False, 2, (1, 1), (1, 1), (1, 1), 1, None, "zeros"
            )

    return conv


def grouped_channels_last(x, w, b):
    """One grouped convolution of channels-last tensors."""
    m, n = x.shape[:2]
    h = x.transpose(0, 1).reshape(n, -1, *x.shape[3:])
    h = h.contiguous(memory_format=torch.channels_last)
    weight = w.reshape(-1, *w.shape[2:]).contiguous(memory_format=torch.channels_last)
    out = F.conv2d(h, weight, b.reshape(-1), 1, 1, 1, m)
    return out.view(n, m, -1, *out.shape[2:]).transpose(0, 1)


def vmapped(x, w, b):
    """``torch.func.vmap`` of one copy's convolution over the particle axis."""
    return torch.func.vmap(lambda h, wi, bi: F.conv2d(h, wi, bi, 1, 1))(x, w, b)


def copy_by_copy(x, w, b):
    """Each copy's convolution, stacked, in the layout it gets (for compile too)."""
    outs = [
        F.conv2d(h, wi, bi, 1, 1)
        for h, wi, bi in zip(x.unbind(0), w.unbind(0), b.unbind(0), strict=True)
    ]
    return torch.stack(outs)


def per_copy_channels_last(x):
    """The stack of each copy of ``x`` in channels-last strides."""
    return torch.stack([h.contiguous(memory_format=torch.channels_last) for h in x])


def stacked_step(form, x, w, b, grad):
    """One forward and backward of ``form``."""

    def step():
        form(x, w, b).backward(grad)

    return step


def network_steps(m, gen):
    """Training steps of ``m`` CNN particles: the stack, the copies, one network."""
    x = torch.randn(m, BATCH_SIZE, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (m, BATCH_SIZE), generator=gen)
    stack = ParticleStack([SmallCNN() for _ in range(m)], sample_ndim=3)
    stack_opt = torch.optim.Adam(stack.parameters(), lr=LR, fused=True)

    def stacked():
        loss = F.cross_entropy(stack(x).flatten(0, 1), y.flatten(), reduction="sum")
        stack_opt.zero_grad()
        (loss / BATCH_SIZE).backward()
        stack_opt.step()

    def copies(count, channels_last):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        nets = [SmallCNN().to(memory_format=layout) for _ in range(count)]
        opts = [torch.optim.Adam(net.parameters(), lr=LR) for net in nets]
        inputs = [h.contiguous(memory_format=layout) for h in x[:count]]

        def step():
            for net, opt, h, t in zip(nets, opts, inputs, y, strict=False):
                loss = F.cross_entropy(net(h), t)
                opt.zero_grad()
                loss.backward()
                opt.step()

        return step

    return {
        "one": copies(1, False),
        "copies NCHW": copies(m, False),
        "copies CL": copies(m, True),
        "stack": stacked,
    }


def main():
    parser = argument_parser(__doc__)
    parser.add_argument("--particles", default="3,8", help="M values (default 3,8)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also torch.compile of the copy-by-copy form (needs a C++ compiler)",
    )
    args = parser.parse_args()
    pin_threads(args.threads)
    forms_asked = {label: make() for label, make in FORMS.items()}
    if args.compile:
        # one compiled graph per layer shape and particle count
        torch._dynamo.config.recompile_limit = 64
        forms_asked["compiled"] = torch.compile(copy_by_copy, dynamic=False)
    print(command_line())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n")
    print_head(["layer", "M", "one network ms", *forms_asked])
    gen = torch.Generator().manual_seed(0)
    for m in [int(v) for v in args.particles.split(",")]:
        for name, n, c_in, c_out, size in SHAPES:
            x1 = torch.randn(n, c_in, size, size, generator=gen, requires_grad=True)
            w1 = torch.randn(c_out, c_in, 3, 3, generator=gen, requires_grad=True)
            b1 = torch.randn(c_out, generator=gen, requires_grad=True)
            g1 = torch.randn(n, c_out, size, size, generator=gen)

            def one():
                F.conv2d(x1, w1, b1, 1, 1).backward(g1)  # noqa: B023

            x = torch.randn(m, n, c_in, size, size, generator=gen, requires_grad=True)
            w = torch.randn(m, c_out, c_in, 3, 3, generator=gen, requires_grad=True)
            b = torch.randn(m, c_out, generator=gen, requires_grad=True)
            g = torch.randn(m, n, c_out, size, size, generator=gen)
            # the layout the package's CPU form gets in a network
            x_cl = per_copy_channels_last(x).detach().requires_grad_()
            g_cl = per_copy_channels_last(g)
            forms = {"one": one}
            for label, form in forms_asked.items():
                if label == "copy by copy":
                    forms[label] = stacked_step(form, x_cl, w, b, g_cl)
                else:
                    forms[label] = stacked_step(form, x, w, b, g)
            best = seconds_per_step(forms, args.steps, args.repeats)
            base = best.pop("one")
            ratios = [seconds / (m * base) for seconds in best.values()]
            cells = [name, str(m), f"{base * 1e3:.2f}"]
            print(row(cells + [f"{r:.2f}" for r in ratios]), flush=True)
    print("\nTraining steps of bench_images.py's CNN (x one: one network's step)\n")
    columns = ["copies NCHW", "copies CL", "stack"]
    print_head(
        ["M", "one network ms", *(f"{c} x one" for c in columns)]
        + ["stack / copies CL"]
    )
    for m in [int(v) for v in args.particles.split(",")]:
        best = seconds_per_step(network_steps(m, gen), args.steps, args.repeats)
        cells = [str(m), f"{best['one'] * 1e3:.2f}"]
        cells += [f"{best[c] / best['one']:.2f}" for c in columns]
        cells.append(f"{best['stack'] / best['copies CL']:.2f}")
        print(row(cells), flush=True)


if __name__ == "__main__":
    main()
