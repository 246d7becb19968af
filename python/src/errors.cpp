// The library's error classes as Python exceptions, with the same one-line messages the command prints:
//   bilevel.UserError(ValueError)     bad input (config, data file, arguments); the command's exit code 2
//     bilevel.ConfigError            .key (the dotted key path), .file, .line, .column, .origin
//     bilevel.DataError              .file
//   bilevel.IoError(OSError)         a file could not be written (disk full, permissions; std::filesystem's
//                                    errors too): the command's exit code 1
#include <pybind11/pybind11.h>

#include <filesystem>

#include "bilevel/util/error.h"
#include "bilevel/util/io_error.h"
#include "bindings.h"

namespace bilevel::python {

namespace {

// Raises `type` with `message` and the given attributes set on the instance.
void raise(PyObject* type, const char* message, const py::dict& attributes = {}) {
  py::object instance = py::reinterpret_borrow<py::object>(type)(message);
  for (auto item : attributes) instance.attr(item.first) = item.second;
  PyErr_SetObject(type, instance.ptr());
}

}  // namespace

void bind_errors(py::module_& m) {
  // Owned by the module's dict; these pointers stay valid while the module exists.
  static PyObject* user_error = nullptr;
  static PyObject* config_error = nullptr;
  static PyObject* data_error = nullptr;
  static PyObject* io_error = nullptr;
  user_error = PyErr_NewExceptionWithDoc("bilevel.UserError",
                                         "Bad input: a config, data file or argument (the command's exit code 2).",
                                         PyExc_ValueError, nullptr);
  config_error = PyErr_NewExceptionWithDoc(
      "bilevel.ConfigError", "A config problem; .key is the dotted key path, .file/.line/.column where it is.",
      user_error, nullptr);
  data_error = PyErr_NewExceptionWithDoc("bilevel.DataError", "A missing, truncated or malformed data file (.file).",
                                         user_error, nullptr);
  io_error = PyErr_NewExceptionWithDoc("bilevel.IoError",
                                       "A file could not be written (disk full, I/O error, permissions).",
                                       PyExc_OSError, nullptr);
  m.add_object("UserError", py::handle(user_error));
  m.add_object("ConfigError", py::handle(config_error));
  m.add_object("DataError", py::handle(data_error));
  m.add_object("IoError", py::handle(io_error));
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ConfigError& e) {
      py::dict a;
      a["key"] = e.key();
      a["file"] = e.where().file;
      a["line"] = e.where().line;
      a["column"] = e.where().column;
      a["origin"] = e.where().origin;
      raise(config_error, e.what(), a);
    } catch (const DataError& e) {
      py::dict a;
      a["file"] = e.file();
      raise(data_error, e.what(), a);
    } catch (const UserError& e) {
      raise(user_error, e.what());
    } catch (const IoError& e) {
      py::dict a;
      a["filename"] = e.file().string();
      if (e.error() != 0) a["errno"] = e.error();
      raise(io_error, e.what(), a);
    } catch (const std::filesystem::filesystem_error& e) {  // the command's exit code 1 too
      py::dict a;
      a["filename"] = e.path1().string();
      a["errno"] = e.code().value();
      raise(io_error, e.what(), a);
    }
  });
}

}  // namespace bilevel::python
