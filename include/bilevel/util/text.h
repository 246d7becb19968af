// Small text helpers shared by the report writers and readers: trimming, splitting a CSV line, lower case, and
// column alignment by display width.
#pragma once

#include <cctype>
#include <sstream>
#include <string>
#include <vector>

namespace bilevel::text {

// s without leading and trailing blanks (space, tab, CR, LF).
inline std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// The fields of one line of a CSV-like file between separators, empty fields included (a trailing separator
// gives a last, empty field).
inline std::vector<std::string> split_fields(const std::string& line, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  std::stringstream ss(line);
  while (std::getline(ss, cur, sep)) parts.push_back(cur);
  if (!line.empty() && line.back() == sep) parts.emplace_back();
  return parts;
}

// ASCII lower case.
inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Display width of a UTF-8 string: its code points (enough for the aligned tables bilevel prints).
inline size_t width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

// s padded with spaces to display width w.
inline std::string pad(const std::string& s, size_t w) { return s + std::string(w > width(s) ? w - width(s) : 0, ' '); }

}  // namespace bilevel::text
