import Foundation
import Testing
@testable import SousKit

/// Each row of the seed's gotchas table, from the evidence that points at it.
@Suite struct DoctorTests {
    func fail(_ name: String, _ detail: String, _ diagnosis: String) -> CheckResult {
        CheckResult(name: name, passed: false, detail: detail, diagnosis: diagnosis)
    }
    let pass = [CheckResult(name: "model list", passed: true, detail: "ok"), CheckResult(name: "tool call", passed: true, detail: "ok")]

    @Test func eachRow() {
        let cases: [([CheckResult], [CheckResult]?, [Finding], Gotcha)] = [
            ([AgentChecks.modelList(HTTPResponse(status: 401, #"{"error":"Unauthorized"}"#), model: "m")], nil, [], .unauthorized),
            ([AgentChecks.modelList(HTTPResponse(status: 200, #"{"data":[{"id":"other"}]}"#), model: "m")], nil, [], .modelNotFound),
            ([AgentChecks.toolCall(HTTPResponse(status: 200, #"{"choices":[{"finish_reason":"length","message":{"content":null,"tool_calls":[]}}]}"#))], nil, [], .lengthTruncation),
            ([AgentChecks.toolCall(HTTPResponse(status: 200, #"{"choices":[{"finish_reason":"stop","message":{"content":"Calling get_weather for Zurich","tool_calls":[]}}]}"#))], nil, [], .toolParser),
            ([AgentChecks.toolCall(HTTPResponse(status: 200, #"{"choices":[{"finish_reason":"stop","message":{"content":"<think>hmm</think> get_weather","tool_calls":[]}}]}"#))], nil, [], .reasoningLeak),
            ([AgentChecks.jsonArguments(HTTPResponse(status: 200, #"{"choices":[{"message":{"tool_calls":[{"function":{"name":"get_weather","arguments":"{location: Zurich"}}]}}]}"#))], nil, [], .argumentsNotJSON),
            ([AgentChecks.roundTrip(HTTPResponse(status: 200, #"{"choices":[{"finish_reason":"tool_calls","message":{"tool_calls":[{"function":{"name":"get_weather"}}]}}]}"#))], nil, [], .repeatedToolCall),
            (pass, nil, [Finding(kind: .drift, text: "--quantization fp8 is forced, but the checkpoint says modelopt_fp4")], .forcedQuantization),
            (pass, [fail("model list", "HTTP 404: <html>", "the endpoint did not return a model list")], [], .reverseProxy),
        ]
        for (direct, proxy, audit, row) in cases {
            #expect(Doctor.diagnose(direct: direct, viaProxy: proxy, audit: audit, servedName: "m") == [row], "\(row)")
        }
        #expect(Doctor.diagnose(direct: pass, viaProxy: nil, audit: [], servedName: "nvidia/x") == [.slashInModelID])
        #expect(Doctor.diagnose(direct: pass, viaProxy: pass, audit: [], servedName: "m") == [])
    }

    @Test func openCodeMergeKeepsOtherSettings() throws {
        let (recipe, _) = try RecipeReader.load(path: "recipes/gpt-oss-120b.yaml", relativeTo: repoRoot)
        let block = try OpenCodeConfig.provider(name: "n", baseURL: "http://h:8000/v1", apiKeyEnv: "K",
                                                model: .init(id: "openai/gpt-oss-120b", maxModelLen: 131072), recipe: recipe, version: VLLMVersion(0, 11, 0))
        let merged = OpenCodeConfig.merge(existing: ["theme": "x", "provider": ["a": ["npm": "y"]]], providerID: "spark", provider: block, model: "openai/gpt-oss-120b")
        #expect(OpenCodeConfig.json(merged) == """
        {
          "$schema" : "https://opencode.ai/config.json",
          "model" : "spark/openai/gpt-oss-120b",
          "provider" : {
            "a" : {
              "npm" : "y"
            },
            "spark" : {
              "models" : {
                "openai/gpt-oss-120b" : {
                  "interleaved" : {
                    "field" : "reasoning_content"
                  },
                  "limit" : {
                    "context" : 98304,
                    "output" : 32768
                  },
                  "name" : "openai/gpt-oss-120b (gpt-oss-120b)",
                  "reasoning" : true,
                  "tool_call" : true
                }
              },
              "name" : "n",
              "npm" : "@ai-sdk/openai-compatible",
              "options" : {
                "apiKey" : "{env:K}",
                "baseURL" : "http://h:8000/v1"
              }
            }
          },
          "theme" : "x"
        }

        """)
        #expect(throws: OpenCodeConfig.Problem.self) {
            try OpenCodeConfig.provider(name: "n", baseURL: "u", apiKeyEnv: nil, model: .init(id: "m", maxModelLen: 65536), recipe: recipe, version: nil)
        }
    }
}
