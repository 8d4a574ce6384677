// The cheapest Value the GPT example's unchanged code can run on: a number and a grad. Its ops
// compute the number and record nothing, and backward() does nothing. bench/gpt.py builds it
// for its `floor` engine: what remains of a step is the interpreter running the script itself
// (generators, zip, comprehensions, sum(), the Adam loop), which every engine that is called
// through Python's operators pays too. So python / floor bounds any such engine's speed-up.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#if PY_VERSION_HEX < 0x030C0000
#include <structmember.h>
#define Py_T_DOUBLE T_DOUBLE
#endif

typedef struct {
    PyObject_HEAD
    double data;
    double grad;
} FloorValue;

static PyTypeObject FloorValueType;

// Recycled objects, as arenagrad's Value does: allocation is not what is being measured.
#define FREE_LIST_SIZE 4096
static FloorValue* free_list[FREE_LIST_SIZE];
static int free_count = 0;

static PyObject* new_value(double data) {
    FloorValue* self = free_count > 0 ? free_list[--free_count] : PyObject_Malloc(sizeof(FloorValue));
    if (self == NULL) return PyErr_NoMemory();
    PyObject_Init((PyObject*)self, &FloorValueType);
    self->data = data;
    self->grad = 0.0;
    return (PyObject*)self;
}

static void value_dealloc(PyObject* self) {
    if (free_count < FREE_LIST_SIZE) {
        free_list[free_count++] = (FloorValue*)self;
    } else {
        PyObject_Free(self);
    }
}

// A Value, float or int operand as a double; 0 for anything else (the op returns NotImplemented).
static int as_double(PyObject* operand, double* out) {
    if (Py_IS_TYPE(operand, &FloorValueType)) {
        *out = ((FloorValue*)operand)->data;
    } else if (PyFloat_CheckExact(operand)) {
        *out = PyFloat_AS_DOUBLE(operand);
    } else if (PyLong_CheckExact(operand)) {
        *out = PyLong_AsDouble(operand);
        if (*out == -1.0 && PyErr_Occurred()) PyErr_Clear();
    } else {
        return 0;
    }
    return 1;
}

#define BINARY_OP(name, expression)                                      \
    static PyObject* name(PyObject* left, PyObject* right) {             \
        double a, b;                                                     \
        if (!as_double(left, &a) || !as_double(right, &b)) Py_RETURN_NOTIMPLEMENTED; \
        return new_value(expression);                                    \
    }
BINARY_OP(value_add, a + b)
BINARY_OP(value_subtract, a - b)
BINARY_OP(value_multiply, a * b)
BINARY_OP(value_divide, a / b)

static PyObject* value_power(PyObject* base, PyObject* exponent, PyObject* modulo) {
    (void)modulo;
    double a, b;
    if (!as_double(base, &a) || !as_double(exponent, &b)) Py_RETURN_NOTIMPLEMENTED;
    return new_value(pow(a, b));
}

static PyObject* value_negative(PyObject* self) { return new_value(-((FloorValue*)self)->data); }

static PyObject* value_exp(PyObject* self, PyObject* unused) {
    (void)unused;
    return new_value(exp(((FloorValue*)self)->data));
}

static PyObject* value_log(PyObject* self, PyObject* unused) {
    (void)unused;
    return new_value(log(((FloorValue*)self)->data));
}

static PyObject* value_relu(PyObject* self, PyObject* unused) {
    (void)unused;
    const double data = ((FloorValue*)self)->data;
    return new_value(data > 0.0 ? data : 0.0);
}

static PyObject* value_backward(PyObject* self, PyObject* unused) {
    (void)self;
    (void)unused;
    Py_RETURN_NONE;
}

static PyObject* value_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    (void)type;
    double data = 0.0;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_SetString(PyExc_TypeError, "Value() takes its number only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "|d", &data)) return NULL;
    return new_value(data);
}

static PyNumberMethods value_number_methods = {
    .nb_add = value_add,
    .nb_subtract = value_subtract,
    .nb_multiply = value_multiply,
    .nb_true_divide = value_divide,
    .nb_power = value_power,
    .nb_negative = value_negative,
};

static PyMethodDef value_methods[] = {
    {"exp", value_exp, METH_NOARGS, NULL},
    {"log", value_log, METH_NOARGS, NULL},
    {"relu", value_relu, METH_NOARGS, NULL},
    {"backward", value_backward, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef value_members[] = {
    {"data", Py_T_DOUBLE, offsetof(FloorValue, data), 0, NULL},
    {"grad", Py_T_DOUBLE, offsetof(FloorValue, grad), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FloorValueType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "floor_value.Value",
    .tp_basicsize = sizeof(FloorValue),
    .tp_dealloc = value_dealloc,
    .tp_as_number = &value_number_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A number that records no graph: the floor of the GPT benchmark.",
    .tp_methods = value_methods,
    .tp_members = value_members,
    .tp_new = value_new,
};

static struct PyModuleDef floor_value_module = {PyModuleDef_HEAD_INIT, "floor_value", NULL, -1, NULL,
                                                NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_floor_value(void) {
    if (PyType_Ready(&FloorValueType) < 0) return NULL;
    PyObject* module = PyModule_Create(&floor_value_module);
    if (module == NULL) return NULL;
    Py_INCREF(&FloorValueType);
    if (PyModule_AddObject(module, "Value", (PyObject*)&FloorValueType) < 0) {
        Py_DECREF(&FloorValueType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
