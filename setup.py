"""Build of qsparse's native libraries.

- The CPU library: csrc/*.c (C99, -O3, OpenMP when the compiler has it, no fast-math, no FP contraction) plus the
  tiny module init in qsparse/_cmodule.c, built as the abi3 extension module ``qsparse._C``. Python calls the
  kernels through ctypes (qsparse/_lib.py), so the library links neither Python nor torch: one wheel serves every
  CPython >= 3.9 and every torch version. A CPU build failure is an error. Sources compile in parallel, on as many
  threads as processors (QSPARSE_BUILD_JOBS overrides), the CUDA library beside them.
- The CUDA library ``qsparse/libqsparse_cuda.so``: cuda/*.cu compiled by nvcc for sm_80 and sm_90 plus PTX, with
  --fmad=false so that it matches the CPU library bit for bit. Controlled by QSPARSE_CUDA: ``0`` skips it, ``1``
  requires it (a failure is an error), unset builds it when nvcc is found and only warns when that fails.
  NVCC / CUDA_HOME locate the compiler; QSPARSE_CUDA_ARCHS overrides the architectures (e.g. "80;90").
"""
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))

# Warning-clean under these; -ffp-contract=off keeps a*b+c two roundings (the CUDA build uses --fmad=false); -g0
# drops the debug information Python's default flags ask for (it costs half again the compile time and 9x the size).
C_FLAGS = ["-std=c99", "-O3", "-g0", "-Wall", "-Wextra", "-ffp-contract=off", "-fvisibility=hidden"]
CUDA_ARCHS_DEFAULT = "80;90"


def _rel(paths):
    return sorted(os.path.relpath(p, ROOT) for p in paths)


def _compiler_accepts(compiler, flags):
    """Whether the C compiler compiles and links a trivial OpenMP program with `flags`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
        except Exception:  # the probe's failure is the answer
            return False
    return True


def _compile_in_parallel(compiler, jobs):
    """Makes `compiler` (a Unix CCompiler) compile the sources of one extension on `jobs` threads; setuptools
    compiles them one after another. The kernel files take minutes each at -O3 with three SIMD clones."""
    def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=0, extra_preargs=None,
                extra_postargs=None, depends=None):
        macros, objects, extra, pp_opts, build = compiler._setup_compile(output_dir, macros, include_dirs, sources,
                                                                         depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            if obj in build:  # not up to date
                src, ext = build[obj]
                compiler._compile(obj, src, ext, cc_args, extra, pp_opts)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, sorted(objects, key=_compile_rank)))
        return objects

    compiler.compile = compile


# The files that take longest to compile (each instantiates its kernels for every dtype, mask mode and group-size
# literal, or llm-mixed-q's quantizer kinds, in three SIMD clones) start first, so that the other files fill the
# remaining threads meanwhile.
_SLOWEST_FIRST = ("qs_quant_llmq", "qs_quant_lut", "qs_quant_scaled", "qs_quant_scaled_fpq", "qs_quant_scaled_pow2",
                  "qs_quant_int_sym", "qs_quant_int_full", "qs_quant_int_asym")


def _compile_rank(obj):
    stem = os.path.splitext(os.path.basename(obj))[0]
    return _SLOWEST_FIRST.index(stem) if stem in _SLOWEST_FIRST else len(_SLOWEST_FIRST)


def _build_jobs():
    env = os.environ.get("QSPARSE_BUILD_JOBS", "").strip()
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _find_nvcc():
    explicit = os.environ.get("NVCC")
    if explicit:
        return explicit
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def build_cuda_library(out_path, nvcc=None, verbose=True):
    """Compiles cuda/*.cu into the shared library `out_path`. Raises CalledProcessError on failure.

    Also used by .ci/run to check that the CUDA sources compile."""
    nvcc = nvcc or _find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (set NVCC or CUDA_HOME)")
    archs = [a.strip() for a in os.environ.get("QSPARSE_CUDA_ARCHS", CUDA_ARCHS_DEFAULT).split(";") if a.strip()]
    gencode = []
    for a in archs:
        gencode += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    gencode += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]  # PTX for newer GPUs
    sources = _rel(glob(os.path.join(ROOT, "cuda", "*.cu")))
    cmd = [nvcc, "-O3", "-std=c++17", "-shared", "--fmad=false", "-Xcompiler", "-fPIC,-fvisibility=hidden,-Wall,-Wextra",
           "-Icsrc", "-Icsrc/include", *gencode, "-o", out_path, *sources]
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    if verbose:
        print("building CUDA library:", " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out_path


class BuildExt(build_ext):
    def build_extensions(self):
        ext = self.extensions[0]
        if sys.platform == "darwin":
            omp = ["-Xpreprocessor", "-fopenmp"]
            omp_link = ["-lomp"]
        else:
            omp = ["-fopenmp"]
            omp_link = ["-fopenmp"]
        if _compiler_accepts(self.compiler, omp + omp_link):
            ext.extra_compile_args = C_FLAGS + omp
            ext.extra_link_args = omp_link
        else:
            warnings.warn("qsparse: the C compiler has no OpenMP; the CPU kernels will run on one thread")
            ext.extra_compile_args = C_FLAGS + ["-Wno-unknown-pragmas"]
        jobs = _build_jobs()
        if jobs > 1 and self.compiler.compiler_type == "unix":
            _compile_in_parallel(self.compiler, jobs)
        # nvcc runs beside the C compiler: it is one single-threaded process, and while the longest C file
        # compiles the other threads run out of files
        with ThreadPoolExecutor(max_workers=1) as cuda:
            pending = cuda.submit(self._build_cuda)
            super().build_extensions()
            pending.result()

    def _build_cuda(self):
        mode = os.environ.get("QSPARSE_CUDA", "auto").strip().lower()
        if mode in ("0", "off", "false", "no"):
            return
        required = mode in ("1", "on", "true", "yes")
        nvcc = _find_nvcc()
        if nvcc is None:
            if required:
                raise RuntimeError("QSPARSE_CUDA=1 but nvcc was not found (set NVCC or CUDA_HOME)")
            return
        out = os.path.join(os.path.dirname(self.get_ext_fullpath("qsparse._C")), "libqsparse_cuda.so")
        try:
            build_cuda_library(out, nvcc)
            self._cuda_out = out
        except (subprocess.CalledProcessError, OSError) as e:
            if required:
                raise
            warnings.warn(f"qsparse: the CUDA library was not built ({e}); CUDA ops will be unavailable")

    def copy_extensions_to_source(self):
        # Editable installs build into a temporary directory and copy back only the Extension outputs; the CUDA
        # library is no Extension, so it is copied beside the in-place _C here.
        super().copy_extensions_to_source()
        out = getattr(self, "_cuda_out", None)
        if out and os.path.exists(out):
            package_dir = self.get_finalized_command("build_py").get_package_dir("qsparse")
            self.copy_file(out, os.path.join(package_dir, "libqsparse_cuda.so"), level=self.verbose)


def _bdist_wheel_options():
    # abi3: the extension uses the limited API only (it is just a module init around plain C).
    return {"bdist_wheel": {"py_limited_api": "cp39"}} if sysconfig.get_config_var("Py_GIL_DISABLED") != 1 else {}


setup(
    ext_modules=[
        Extension(
            "qsparse._C",
            sources=_rel(glob(os.path.join(ROOT, "csrc", "*.c"))) + ["qsparse/_cmodule.c"],
            include_dirs=["csrc", "csrc/include"],
            depends=_rel(glob(os.path.join(ROOT, "csrc", "*.h")) + glob(os.path.join(ROOT, "csrc", "include", "*.h"))),
            define_macros=[("Py_LIMITED_API", "0x03090000")],
            libraries=[] if sys.platform == "win32" else ["m"],  # pow() of the mse observer
            py_limited_api=True,
        )
    ],
    cmdclass={"build_ext": BuildExt},
    options=_bdist_wheel_options(),
)
