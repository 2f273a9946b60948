/*
 * _cmodule.c -- the CPython face of the CPU kernel library.
 *
 * The kernels in csrc/ are plain C and are called through ctypes (qsparse/_lib.py). This file only makes the
 * same shared object a valid extension module, so that setuptools builds, names and installs it as a normal
 * (abi3) wheel member: importing it reports the ABI version and the capabilities, nothing else.
 */
#ifndef Py_LIMITED_API
#define Py_LIMITED_API 0x03090000
#endif
#include <Python.h>

#include "qsparse.h"

static struct PyModuleDef qs_module = {
    PyModuleDef_HEAD_INIT,
    "_C",
    "qsparse's CPU kernels. Called through ctypes; see qsparse/_lib.py.",
    -1,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__C(void) {
    PyObject *m = PyModule_Create(&qs_module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "ABI_VERSION", QS_ABI_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "CAPABILITIES", (long)qs_capabilities()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
