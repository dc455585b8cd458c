// The CLI's output forms: text, JSON, CSV and XLSX render the same Doc.
#include "tools/cli/output.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tally::cli {
namespace {

Doc SampleDoc() {
  Doc doc;
  doc.Add("available", int64_t{70});
  doc.Add("held", int64_t{-3});
  doc.Add("next_cursor", Cell{});
  doc.Add("truncated", false);
  Table& t = doc.AddTable("entries", {"seq", "kind", "amount", "reference"});
  t.rows.push_back({uint64_t{12}, std::string("deduct"), int64_t{30}, std::string("inv, \"881\"")});
  t.rows.push_back({uint64_t{9}, std::string("grant"), int64_t{100}, Cell{}});
  return doc;
}

TEST(Json, EscapesControlCharactersQuotesAndBackslashes) {
  EXPECT_EQ(JsonEscape("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\u0001\"");
  EXPECT_EQ(JsonEscape("café"), "\"café\"");
}

TEST(Json, OneObjectFieldsThenTablesAsArraysOfObjects) {
  EXPECT_EQ(RenderJson(SampleDoc()),
            "{\"available\":70,\"held\":-3,\"next_cursor\":null,\"truncated\":false,"
            "\"entries\":[{\"seq\":12,\"kind\":\"deduct\",\"amount\":30,"
            "\"reference\":\"inv, \\\"881\\\"\"},"
            "{\"seq\":9,\"kind\":\"grant\",\"amount\":100,\"reference\":null}]}\n");
}

TEST(Json, FullRangeIntegersStayExact) {
  Doc doc;
  doc.Add("max", INT64_MAX);
  doc.Add("min", INT64_MIN);
  doc.Add("umax", UINT64_MAX);
  EXPECT_EQ(RenderJson(doc),
            "{\"max\":9223372036854775807,\"min\":-9223372036854775808,"
            "\"umax\":18446744073709551615}\n");
}

TEST(Text, AlignedFieldsAndRightAlignedNumbers) {
  EXPECT_EQ(RenderText(SampleDoc()),
            "available    70\n"
            "held         -3\n"
            "next_cursor  -\n"
            "truncated    no\n"
            "\n"
            "seq  kind    amount  reference\n"
            " 12  deduct      30  inv, \"881\"\n"
            "  9  grant      100  -\n");
}

TEST(Text, EmptyTableSaysSo) {
  Doc doc;
  doc.AddTable("requests", {"request_id"});
  EXPECT_EQ(RenderText(doc), "(no requests)\n");
}

TEST(Csv, HeaderThenRowsQuotedPerRfc4180) {
  EXPECT_EQ(RenderCsv(SampleDoc()),
            "seq,kind,amount,reference\r\n"
            "12,deduct,30,\"inv, \"\"881\"\"\"\r\n"
            "9,grant,100,\r\n");
}

TEST(Xlsx, WritesAZipWorkbookAndNamesAnUnwritablePath) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tally-cli-xlsx-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "history.xlsx").string();
  ASSERT_TRUE(WriteXlsx(SampleDoc(), path).ok());
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  EXPECT_EQ(std::string(magic, 4), std::string("PK\x03\x04", 4));  // a zip, as XLSX is
  EXPECT_GT(std::filesystem::file_size(path), 1000u);

  absl::Status bad = WriteXlsx(SampleDoc(), (dir / "no-such-dir" / "x.xlsx").string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("no-such-dir"), absl::string_view::npos) << bad;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tally::cli
