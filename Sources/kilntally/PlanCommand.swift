import Acquisition
import ArgumentParser
import KilnTallyCore
import KilnTallyDaemon

struct Plan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the read requests each device is polled with (merged within the bus limits and gap budget).")

    @Option(help: "Configuration file.")
    var config: String = DefaultPaths.config

    func run() async throws {
        let c: KilnTallyConfiguration
        do {
            c = try KilnTallyConfiguration.load(file: config)
        } catch {
            var stderr = StandardError()
            print(error.description, to: &stderr)
            throw ExitCode(KilnTallyExit.configError.rawValue)
        }
        var totalRequests = 0, totalChannels = 0
        for bus in c.acquisition.buses {
            print("bus \(bus.name): at most \(bus.limits.maxRegisters) registers / \(bus.limits.maxBits) bits per request, gaps up to \(bus.limits.maxGap)")
            for device in c.acquisition.devices(on: bus.name) {
                let plan = RequestPlanner.plan(device.channels, limits: bus.limits)
                let read = plan.reduce(0) { $0 + $1.count }
                let wasted = RequestPlanner.wasted(plan, channels: device.channels)
                print("  device \(device.id) (unit \(device.unitID), every \(device.pollInterval)): \(plan.count) request(s) for "
                      + "\(device.channels.count) channel(s), \(read) registers/bits read, \(wasted) unused")
                for r in plan {
                    let names = r.channels.map { device.channels[$0].id.rawValue }.joined(separator: ", ")
                    print("    \(r.table.rawValue.padded(8)) address \(String(r.address).padded(6)) count \(String(r.count).padded(4)) -> \(names)")
                }
                totalRequests += plan.count
                totalChannels += device.channels.count
            }
        }
        print("\(totalRequests) request(s) per poll cycle for \(totalChannels) channel(s)")
    }
}

extension String {
    fileprivate func padded(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
