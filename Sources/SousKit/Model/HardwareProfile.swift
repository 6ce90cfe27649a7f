/// What sous knows about a kind of node: GPUs, memory, and the limits that protect the operating system.
public struct HardwareProfile: Sendable, Equatable {
    public var name: String
    public var gpusPerNode: Int
    public var memoryGiB: Int
    /// GPU and operating system share one pool of memory.
    public var unifiedMemory: Bool
    /// Above this gpu_memory_utilization the OS is left too little memory (warning).
    public var maxSafeGpuMemoryUtilization: Double

    /// Built-in profiles; recipes' `hardware:` keys and the inventory's `hardware:` name one of these.
    public static let known: [String: HardwareProfile] = [
        "dgx_spark_gb10": HardwareProfile(name: "dgx_spark_gb10", gpusPerNode: 1, memoryGiB: 128, unifiedMemory: true,
                                          maxSafeGpuMemoryUtilization: 0.85),
    ]
}
