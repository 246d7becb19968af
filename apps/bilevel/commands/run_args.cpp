// RUN_DIR [--checkpoint WHICH] [-o FILE]: the arguments of resume, eval and export.
#include "bilevel/util/error.h"
#include "commands.h"

namespace bilevel::cli {

RunArgs parse_run_args(const Args& args, const std::string& command, bool with_output) {
  const std::string who = "bilevel " + command + ": ";
  RunArgs r;
  auto value = [&](size_t& i) -> const std::string& {
    if (i + 1 >= args.size()) throw UserError(who + args[i] + " needs a value (see --help)");
    return args[++i];
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--checkpoint") r.checkpoint = value(i);
    else if (a.rfind("--checkpoint=", 0) == 0) r.checkpoint = a.substr(13);
    else if (with_output && (a == "-o" || a == "--output")) r.output = value(i);
    else if (a.rfind("-", 0) == 0) throw UserError(who + "unknown option '" + a + "' (see --help)");
    else if (r.dir.empty()) r.dir = a;
    else throw UserError(who + "expected exactly one RUN_DIR, got also '" + a + "' (see --help)");
  }
  if (r.dir.empty()) throw UserError(who + "expected RUN_DIR (see --help)");
  return r;
}

}  // namespace bilevel::cli
