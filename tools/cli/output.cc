// output.cc: a Doc as text, JSON, CSV and XLSX.
#include "tools/cli/output.h"

#include <algorithm>
#include <cstdio>

#include "tools/cli/strings.h"
#include "xlsxwriter.h"

namespace tally::cli {
namespace {

bool IsNumber(const Cell& cell) {
  return std::holds_alternative<int64_t>(cell) || std::holds_alternative<uint64_t>(cell);
}

std::string CsvField(const Cell& cell) {
  if (std::holds_alternative<std::monostate>(cell)) return "";
  std::string text = CellText(cell);
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

void AppendJsonTable(const Table& table, std::string* out) {
  *out += '[';
  for (size_t r = 0; r < table.rows.size(); ++r) {
    if (r > 0) *out += ',';
    *out += '{';
    for (size_t c = 0; c < table.columns.size() && c < table.rows[r].size(); ++c) {
      if (c > 0) *out += ',';
      Append(out, JsonEscape(table.columns[c]), ":", CellJson(table.rows[r][c]));
    }
    *out += '}';
  }
  *out += ']';
}

void AppendTextTable(const Table& table, std::string* out) {
  if (table.rows.empty()) {
    Append(out, "(no ", table.name, ")\n");
    return;
  }
  std::vector<size_t> width(table.columns.size());
  std::vector<bool> numeric(table.columns.size(), true);
  std::vector<std::vector<std::string>> texts;
  for (size_t c = 0; c < table.columns.size(); ++c) width[c] = table.columns[c].size();
  for (const std::vector<Cell>& row : table.rows) {
    std::vector<std::string>& line = texts.emplace_back();
    for (size_t c = 0; c < table.columns.size(); ++c) {
      const Cell& cell = c < row.size() ? row[c] : Cell{};
      line.push_back(CellText(cell));
      width[c] = std::max(width[c], line.back().size());
      if (!IsNumber(cell) && !std::holds_alternative<std::monostate>(cell)) numeric[c] = false;
    }
  }
  auto emit = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) line += "  ";
      std::string pad(width[c] - cells[c].size(), ' ');
      line += numeric[c] ? pad + cells[c] : cells[c] + pad;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    Append(out, line, "\n");
  };
  emit(table.columns);
  for (const std::vector<std::string>& line : texts) emit(line);
}

}  // namespace

std::string JsonEscape(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string CellJson(const Cell& cell) {
  if (std::holds_alternative<std::monostate>(cell)) return "null";
  if (const bool* b = std::get_if<bool>(&cell)) return *b ? "true" : "false";
  if (const int64_t* i = std::get_if<int64_t>(&cell)) return Cat(*i);
  if (const uint64_t* u = std::get_if<uint64_t>(&cell)) return Cat(*u);
  return JsonEscape(std::get<std::string>(cell));
}

std::string CellText(const Cell& cell) {
  if (std::holds_alternative<std::monostate>(cell)) return "-";
  if (const bool* b = std::get_if<bool>(&cell)) return *b ? "yes" : "no";
  if (const int64_t* i = std::get_if<int64_t>(&cell)) return Cat(*i);
  if (const uint64_t* u = std::get_if<uint64_t>(&cell)) return Cat(*u);
  return std::get<std::string>(cell);
}

std::string RenderJson(const Doc& doc) {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, value] : doc.fields) {
    Append(&out, first ? "" : ",", JsonEscape(key), ":", CellJson(value));
    first = false;
  }
  for (const Table& table : doc.tables) {
    Append(&out, first ? "" : ",", JsonEscape(table.name), ":");
    AppendJsonTable(table, &out);
    first = false;
  }
  out += "}\n";
  return out;
}

std::string RenderText(const Doc& doc) {
  std::string out;
  size_t key_width = 0;
  for (const auto& field : doc.fields) key_width = std::max(key_width, field.first.size());
  for (const auto& [key, value] : doc.fields) {
    Append(&out, key, std::string(key_width - key.size() + 2, ' '), CellText(value), "\n");
  }
  for (const Table& table : doc.tables) {
    if (!out.empty()) out += "\n";
    AppendTextTable(table, &out);
  }
  return out;
}

std::string RenderCsv(const Doc& doc) {
  std::string out;
  if (doc.tables.empty()) return out;
  const Table& table = doc.tables.front();
  for (size_t c = 0; c < table.columns.size(); ++c) {
    Append(&out, c > 0 ? "," : "", CsvField(table.columns[c]));
  }
  out += "\r\n";
  for (const std::vector<Cell>& row : table.rows) {
    for (size_t c = 0; c < row.size(); ++c) Append(&out, c > 0 ? "," : "", CsvField(row[c]));
    out += "\r\n";
  }
  return out;
}

absl::Status WriteXlsx(const Doc& doc, const std::string& path) {
  lxw_workbook* workbook = workbook_new(path.c_str());
  if (workbook == nullptr) return absl::InternalError(Cat("cannot create ", path));
  lxw_format* bold = workbook_add_format(workbook);
  format_set_bold(bold);
  constexpr int64_t exact_max = int64_t{1} << 53;
  lxw_error err = LXW_NO_ERROR;
  for (const Table& table : doc.tables) {
    // Worksheet names are at most 31 characters.
    std::string sheet_name = table.name.substr(0, 31);
    lxw_worksheet* sheet = workbook_add_worksheet(workbook, sheet_name.c_str());
    if (sheet == nullptr) {
      err = LXW_ERROR_MEMORY_MALLOC_FAILED;
      break;
    }
    for (size_t c = 0; c < table.columns.size() && err == LXW_NO_ERROR; ++c) {
      err = worksheet_write_string(sheet, 0, static_cast<lxw_col_t>(c), table.columns[c].c_str(),
                                   bold);
    }
    for (size_t r = 0; r < table.rows.size() && err == LXW_NO_ERROR; ++r) {
      const auto row = static_cast<lxw_row_t>(r + 1);
      for (size_t c = 0; c < table.rows[r].size() && err == LXW_NO_ERROR; ++c) {
        const Cell& cell = table.rows[r][c];
        const auto col = static_cast<lxw_col_t>(c);
        if (std::holds_alternative<std::monostate>(cell)) continue;
        if (const bool* b = std::get_if<bool>(&cell)) {
          err = worksheet_write_boolean(sheet, row, col, *b ? 1 : 0, nullptr);
        } else if (const int64_t* i = std::get_if<int64_t>(&cell);
                   i && *i<exact_max&& * i> - exact_max) {
          err = worksheet_write_number(sheet, row, col, static_cast<double>(*i), nullptr);
        } else if (const uint64_t* u = std::get_if<uint64_t>(&cell);
                   u && *u < uint64_t{exact_max}) {
          err = worksheet_write_number(sheet, row, col, static_cast<double>(*u), nullptr);
        } else {
          err = worksheet_write_string(sheet, row, col, CellText(cell).c_str(), nullptr);
        }
      }
    }
  }
  // workbook_close writes the file and frees the workbook, also after an error.
  lxw_error close_err = workbook_close(workbook);
  if (err == LXW_NO_ERROR) err = close_err;
  if (err != LXW_NO_ERROR) {
    return absl::InternalError(Cat("cannot write ", path, ": ", lxw_strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace tally::cli
